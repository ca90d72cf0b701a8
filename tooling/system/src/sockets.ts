import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Whether process `pid` holds a TCP socket listening on `port`, from Linux's /proc: its file
 * descriptors name socket inodes, and /proc/<pid>/net/tcp{,6} lists the sockets of its network
 * namespace with their state and inode. Gateway replicas share one port, so a request to that port
 * can reach any of them: only this tells that a new one is accepting connections itself.
 */
export function listensOn(pid: number, port: number): boolean {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone, or not Linux
  }
  for (const fd of fds) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const localPort = Number.parseInt(fields[1]?.split(':')[1] ?? '', 16);
      // State 0A is LISTEN.
      if (fields[3] === '0A' && localPort === port && inodes.has(fields[9] ?? '')) return true;
    }
  }
  return false;
}
