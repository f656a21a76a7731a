/** A path's names, with the empty ones and `.` left out (`..` kept). */
export function pathComponents(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}
