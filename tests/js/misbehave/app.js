// A JavaScript plugin that misbehaves on records whose value contains `POISON`, in the
// way config `mode` names: `loop` (never returns), `memhog` (allocates until stopped),
// `throw` (an exception). Other records pass. Test fixture, not an example.
import * as host from 'sluice:transform/host@0.2.2';
import { Outcome, bindHost, config, transform } from 'sluice-sdk';

bindHost(host);

function misbehave(mode, record) {
  if (!(record.valueStr() ?? '').includes('POISON')) return Outcome.keep();
  if (mode === 'loop') {
    let n = 0;
    for (;;) n++;
  }
  if (mode === 'memhog') {
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
  }
  if (mode === 'throw') throw new RangeError(`poison record ${record.valueStr()}`);
  return Outcome.keep();
}

export const { init, process, onTimers } = transform(misbehave, {
  init: () => config('mode') ?? 'identity',
});
