// The booking dialog's data fields, read as the CLI reads `--stage NAME=SOURCE` and `--save
// GLOB`: pure, so that what the dialog says is wrong is said as it is typed.

/** What the dialog's "stage" and "save" fields give a job. */
export type JobData = {
  stage: Record<string, string>;
  save: string[];
  save_to: string | null;
};

/**
 * The stage lines ("NAME=SOURCE", one per line; blank lines skipped), the save globs (split
 * on white space) and the destination, or why they cannot be sent. A source is an absolute
 * path on the server or `s3://bucket/prefix`; a name is one directory under $GPUBOOK_STAGE.
 */
export function readJobData(stage: string, save: string, saveTo: string): JobData | { problem: string } {
  const out: Record<string, string> = {};
  for (const raw of stage.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) return { problem: `Give each staged source as NAME=SOURCE, e.g. coco=/nfs/datasets/coco ("${line}").` };
    const name = line.slice(0, eq).trim();
    const source = line.slice(eq + 1).trim();
    if (name === '.' || name === '..' || name.includes('/')) {
      return { problem: `"${name}" must be one directory name under $GPUBOOK_STAGE, without "/".` };
    }
    if (!source.startsWith('/') && !source.startsWith('s3://')) {
      return { problem: `The source of "${name}" must be an absolute path on the server or s3://bucket/prefix, not "${source}".` };
    }
    if (name in out) return { problem: `"${name}" is staged twice.` };
    out[name] = source;
  }
  const globs = save.split(/\s+/).filter((g) => g !== '');
  const to = saveTo.trim();
  if (globs.length && !to) return { problem: 'Say where to save the files (a directory on the server or s3://bucket/prefix).' };
  if (to && !globs.length) return { problem: 'Say which files to save (e.g. runs/**/best.pt), or leave "Save to" empty.' };
  if (to && !to.startsWith('/') && !to.startsWith('s3://')) {
    return { problem: `"Save to" must be an absolute path on the server or s3://bucket/prefix, not "${to}".` };
  }
  return { stage: out, save: globs, save_to: to || null };
}
