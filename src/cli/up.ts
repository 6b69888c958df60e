// `trellis up` (placeholder until the command lands).
export const help = 'trellis up: not built yet\n';
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('trellis up: not built yet\n');
  return 1;
}
