// Images (`GET /api/v1/images`): the host's, which containers start from, and the ones users
// published from their containers (an admin sees all of them). A published image can be
// deleted by its owner or an admin (`DELETE /api/v1/images/{owner}/{name}`); containers made
// from it keep their files.

import { api, path } from '../api';
import { ErrorBox, Loading, Notice, PageTitle, TableWrap, useConfirm } from '../components';
import { bytes, dateTime } from '../format';
import { useAction, usePoll } from '../hooks';
import { useSession } from '../session';
import type { Image } from '../types';

/** A published image's own name: the API lists it as `owner/name`. */
function shortName(image: Image): string {
  return image.owner && image.name.startsWith(`${image.owner}/`) ? image.name.slice(image.owner.length + 1) : image.name;
}

export function ImagesPage() {
  const { session } = useSession();
  const images = usePoll(() => api<Image[]>('GET', '/images'), [], 0, ['images']);
  const [dialog, ask] = useConfirm();
  const { busy, error, notice, run } = useAction(() => void images.reload());

  const remove = async (image: Image) => {
    if (!image.owner) return;
    const yes = await ask({
      title: `Delete image ${image.name}?`,
      body: <p>No new container can start from it; containers made from it keep their files.</p>,
      confirm: `Delete ${image.name}`,
      danger: true,
    });
    if (!yes) return;
    const owner = image.owner;
    await run(image.name, () => api('DELETE', `/images/${path(owner, shortName(image))}`), `Image ${image.name} deleted.`);
  };

  const list = images.data ?? [];
  const admin = session.role === 'admin';
  return (
    <>
      <PageTitle title="Images">Images</PageTitle>
      {dialog}
      <p>
        New containers start from one of these. Publish a container as an image from its page (<em>Copy and
        publish</em>).
      </p>
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
      <ErrorBox error={images.error} title="Images could not be listed" />
      {images.loading ? (
        <Loading what="images" />
      ) : list.length === 0 ? (
        <p class="muted">No images.</p>
      ) : (
        <TableWrap label="Images">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">From</th>
                <th scope="col">Size</th>
                <th scope="col">Made</th>
                <th scope="col">Description</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((image) => (
                <tr key={`${image.owner ?? ''}:${image.name}`}>
                  <th scope="row">{image.name}</th>
                  <td>{image.owner ? `${image.owner}${image.public ? ', for everyone' : ''}` : 'the host'}</td>
                  <td>{bytes(image.size)}</td>
                  <td>{image.created_at ? dateTime(image.created_at) : '–'}</td>
                  <td>{image.description || '–'}</td>
                  <td>
                    {image.owner && (admin || image.owner === session.name) ? (
                      <button
                        type="button"
                        class="small danger"
                        disabled={busy !== ''}
                        aria-label={`Delete image ${image.name}`}
                        onClick={() => remove(image)}
                      >
                        Delete
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </>
  );
}
