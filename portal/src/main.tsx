// The portal's shell: who is signed in, the header with its navigation, and which page the
// `#/…` route shows. Routes live in the hash so the server serves one page for all of them.
import '@xterm/xterm/css/xterm.css';
import './app.css';

import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

import { api, ApiError, setCsrfToken, setUnauthorizedHandler } from './api';
import { ErrorBox, Loading, PageTitle } from './components';
import { desktopPageOf } from './desktop';
import { href, live, navigate, useHashRoute, useLiveEvents } from './hooks';
import { AccountPage } from './pages/Account';
import { AuditPage } from './pages/Audit';
import { ConnectPage } from './pages/Connect';
import { ContainerPage } from './pages/Container';
import { ContainersPage } from './pages/Containers';
import { DesktopPage } from './pages/Desktop';
import { GpusPage } from './pages/Gpus';
import { ImagesPage } from './pages/Images';
import { InvitePage } from './pages/Invite';
import { SharesPage } from './pages/Shares';
import { SignInPage } from './pages/SignIn';
import { SystemPage } from './pages/System';
import { UsersPage } from './pages/Users';
import { SessionCtx } from './session';
import type { Session } from './types';

/**
 * Whether the live stream is up: pages change as things happen; while it is down they load
 * again every 30 s, and the badge says so.
 */
function LiveBadge() {
  const [up, setUp] = useState(live.connected);
  useLiveEvents((event) => {
    if (event.kind === 'up') setUp(true);
    if (event.kind === 'down') setUp(false);
  });
  return (
    <span
      class={`live ${up ? 'up' : 'down'}`}
      data-live={up ? 'up' : 'down'}
      title={up ? 'Pages update as things change' : 'Live updates paused: pages refresh every 30 s until they are back'}
    >
      {up ? 'live' : 'reconnecting…'}
    </span>
  );
}

type Probe = { state: 'loading' } | { state: 'out'; note?: string } | { state: 'in'; session: Session } | { state: 'failed'; error: unknown };

function App() {
  const route = useHashRoute();
  const [probe, setProbe] = useState<Probe>({ state: 'loading' });

  const setSession = (session: Session | null, note?: string) => {
    setCsrfToken(session?.csrf_token ?? null);
    setProbe(session ? { state: 'in', session } : note ? { state: 'out', note } : { state: 'out' });
  };

  useEffect(() => {
    setUnauthorizedHandler(() => setSession(null, 'Your session ended. Sign in again to go on.'));
    api<Session>('GET', '/session', undefined, { quiet401: true })
      .then((session) => setSession(session))
      .catch((error) => {
        if (error instanceof ApiError && error.status === 401) setSession(null);
        else setProbe({ state: 'failed', error });
      });
    return () => setUnauthorizedHandler(null);
  }, []);

  // After a change of page, the keyboard and screen readers start at its heading.
  const routeKey = route.join('/');
  const firstRoute = useRef(true);
  useEffect(() => {
    if (firstRoute.current) {
      firstRoute.current = false;
      return;
    }
    document.getElementById('page-title')?.focus();
  }, [routeKey, probe.state]);

  const signOut = async () => {
    try {
      await api('DELETE', '/session');
    } catch {
      // Signed out here either way; the server forgets the session when it expires.
    }
    setSession(null, 'You are signed out.');
    navigate();
  };

  let page;
  if (route[0] === 'invite' && route[1]) {
    page = <InvitePage token={route[1]} onSignedIn={(session) => setSession(session)} />;
  } else if (probe.state === 'loading') {
    page = <Loading what="your session" />;
  } else if (probe.state === 'failed') {
    page = (
      <>
        <PageTitle title="Not available">The portal cannot reach ssp</PageTitle>
        <ErrorBox error={probe.error} />
        <p>
          <button type="button" onClick={() => location.reload()}>
            Try again
          </button>
        </p>
      </>
    );
  } else if (probe.state === 'out') {
    page = <SignInPage note={probe.note} onSignedIn={(session) => setSession(session)} />;
  } else {
    page = <SignedIn route={route} session={probe.session} />;
  }

  const session = probe.state === 'in' ? probe.session : null;
  const desktop = desktopPageOf(route);
  if (session && desktop) {
    // The remote desktop has the whole window: no header, no navigation.
    return (
      <SessionCtx.Provider value={{ session, setSession }}>
        <DesktopPage owner={desktop.owner} name={desktop.name} />
      </SessionCtx.Provider>
    );
  }
  return (
    <SessionCtx.Provider value={session ? { session, setSession } : null}>
      <a
        class="skip"
        href="#page-title"
        onClick={(event) => {
          event.preventDefault();
          document.getElementById('page-title')?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href()}>
          ssp
        </a>
        {session ? <Nav route={route} admin={session.role === 'admin'} /> : null}
        {session ? (
          <div class="who">
            <LiveBadge />
            <span>
              {session.name}
              {session.role === 'admin' ? <span class="badge neutral">admin</span> : null}
            </span>
            <button type="button" class="small" onClick={signOut}>
              Sign out
            </button>
          </div>
        ) : null}
      </header>
      <main id="main">{page}</main>
    </SessionCtx.Provider>
  );
}

const links: { parts: string[]; label: string; admin?: boolean }[] = [
  { parts: [], label: 'Containers' },
  { parts: ['gpus'], label: 'GPUs' },
  { parts: ['images'], label: 'Images' },
  { parts: ['connect'], label: 'Connect' },
  { parts: ['account'], label: 'Account' },
  { parts: ['users'], label: 'Users', admin: true },
  { parts: ['shares'], label: 'Shares', admin: true },
  { parts: ['audit'], label: 'Audit log', admin: true },
  { parts: ['system'], label: 'System', admin: true },
];

function Nav({ route, admin }: { route: string[]; admin: boolean }) {
  const section = route[0] === 'containers' ? '' : (route[0] ?? '');
  return (
    <nav aria-label="Main">
      <ul>
        {links
          .filter((link) => admin || !link.admin)
          .map((link) => (
            <li key={link.label}>
              <a href={href(...link.parts)} aria-current={(link.parts[0] ?? '') === section ? 'page' : undefined}>
                {link.label}
              </a>
            </li>
          ))}
      </ul>
    </nav>
  );
}

function SignedIn({ route, session }: { route: string[]; session: Session }) {
  const [first, ...rest] = route;
  switch (first) {
    case undefined:
      return <ContainersPage />;
    case 'containers':
      if (rest.length === 2 && rest[0] && rest[1]) return <ContainerPage owner={rest[0]} name={rest[1]} />;
      return <ContainersPage />;
    case 'gpus':
      return <GpusPage />;
    case 'images':
      return <ImagesPage />;
    case 'connect':
      return <ConnectPage />;
    case 'account':
      return <AccountPage />;
    case 'users':
      if (session.role === 'admin') return <UsersPage />;
      break;
    case 'shares':
      if (session.role === 'admin') return <SharesPage />;
      break;
    case 'audit':
      if (session.role === 'admin') return <AuditPage />;
      break;
    case 'system':
      if (session.role === 'admin') return <SystemPage />;
      break;
    default:
      break;
  }
  return (
    <>
      <PageTitle title="Not found">No such page</PageTitle>
      <p>
        <a href={href()}>Go to your containers</a>
      </p>
    </>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
