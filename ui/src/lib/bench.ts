export function installBench(): void {}
