// Linux's dev_t encoding (numbers below 2^32): the major and minor of a device number.
export function major(rdev: number): number {
  return (rdev >>> 8) & 0xfff;
}

export function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
}
