-- Which way a gateway channel reached the container: `attach` (LXD's own forkexec, started by
-- ssp), `lxd-exec` (LXD's exec websocket, the fallback), `netns` (a socket in the container's
-- network namespace), `sshd-socket` (a jump through the sshd proxy device). Older rows: NULL.
ALTER TABLE gateway_sessions ADD COLUMN path TEXT;
