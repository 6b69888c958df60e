// The program the runner starts to open a sidecar's listening sockets (held-listeners.ts).
// Isolated, it runs in the sidecar's pod as the sidecar's uid: a socket belongs to the
// network namespace it was made in, and Node cannot enter another one, so the runner
// cannot open them itself. It listens at each HOST:PORT of its arguments, sends each
// socket to the runner over the IPC channel (a raw handle: the runner keeps it without
// accepting on it), and exits. The app that will connect starts after its sidecar is
// ready, so nothing of the mesh connects while the binder still holds the sockets.
import net from 'node:net';

/** Tells the runner why, then exits 1. */
function fail(reason: string): void {
  process.send?.({ error: reason }, undefined, undefined, () => process.exit(1));
}

function listenAt(key: string): Promise<net.Server | undefined> {
  const colon = key.lastIndexOf(':');
  const host = key.slice(0, colon);
  const port = Number(key.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`"${key}" is not HOST:PORT`);
    return Promise.resolve(undefined);
  }
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', (err) => {
      fail(`listen ${key}: ${err.message}`);
      resolve(undefined);
    });
    server.listen({ host, port }, () => resolve(server));
  });
}

async function main(): Promise<void> {
  if (process.send === undefined) {
    process.stderr.write('listener-binder: started without an IPC channel; the runner starts it\n');
    process.exit(2);
  }
  const bound: { key: string; server: net.Server }[] = [];
  for (const key of process.argv.slice(2)) {
    const server = await listenAt(key);
    if (server === undefined) return;
    bound.push({ key, server });
  }
  for (const b of bound) {
    // The raw TCP handle, not the net.Server: a server sent over IPC starts accepting in the receiver.
    const handle = (b.server as unknown as { _handle: net.Server })._handle;
    await new Promise<void>((resolve, reject) => process.send!({ key: b.key }, handle, undefined, (err) => (err ? reject(err) : resolve())));
  }
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`listener-binder: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
