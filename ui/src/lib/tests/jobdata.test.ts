import { describe, expect, it } from 'vitest';
import { readJobData } from '../jobdata';
import { toBookRequest } from '../selection';

describe("the dialog's data fields", () => {
  it('reads stage lines and save globs as the CLI reads --stage and --save', () => {
    expect(readJobData('coco=/nfs/datasets/coco\n\n  imgs = s3://b/imgs/ \n', 'runs/**/best.pt  logs/*.json', 's3://b/{id}/')).toEqual({
      stage: { coco: '/nfs/datasets/coco', imgs: 's3://b/imgs/' },
      save: ['runs/**/best.pt', 'logs/*.json'],
      save_to: 's3://b/{id}/',
    });
    expect(readJobData('', '', '')).toEqual({ stage: {}, save: [], save_to: null });
  });

  it('says what is wrong, as it is typed', () => {
    const problem = (r: ReturnType<typeof readJobData>) => ('problem' in r ? r.problem : null);
    expect(problem(readJobData('/nfs/coco', '', ''))).toContain('NAME=SOURCE');
    expect(problem(readJobData('a/b=/nfs/coco', '', ''))).toContain('one directory name');
    expect(problem(readJobData('coco=nfs/coco', '', ''))).toContain('absolute path');
    expect(problem(readJobData('c=/a\nc=/b', '', ''))).toContain('twice');
    expect(problem(readJobData('', 'best.pt', ''))).toContain('where to save');
    expect(problem(readJobData('', '', '/out'))).toContain('which files');
    expect(problem(readJobData('', 'best.pt', 'out/'))).toContain('absolute path');
  });

  it('goes into the booking request with the S3 credentials named', () => {
    const data = readJobData('coco=s3://b/coco/', 'best.pt', 's3://b/out/');
    if ('problem' in data) throw new Error(data.problem);
    const req = toBookRequest(
      { server: 's', lanes: [{ server: 's', uuid: 'GPU-a', index: 0 }], start: 0, end: 3_600_000 },
      { title: 't', command: 'python train.py', cwd: '', endSignal: '', keepSlot: false, data, s3Profile: ' lab ', s3EnvFile: '' },
    );
    expect(req.job?.stage).toEqual({ coco: 's3://b/coco/' });
    expect(req.job?.save).toEqual(['best.pt']);
    expect(req.job?.save_to).toBe('s3://b/out/');
    expect(req.job?.s3).toEqual({ profile: 'lab', env_file: null });
  });
});
