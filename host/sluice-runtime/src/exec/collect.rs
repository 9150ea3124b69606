//! Turning a call's output entries into verdicts: every entry checked, splices built.

use bytes::Bytes;
use sluice_sdk::codec::{Reader, RecordView};
use sluice_sdk::entries::{Entries, Entry, Spans, splice_record_into};

use super::{BatchInput, BatchOutput, CallKind, Emitted, Executor};
use crate::sandbox::bound_str;

impl Executor {
    /// Turns output entries into results, appended to `out` only if the whole output is
    /// valid (a malformed entry sequence fails the call and its records are retried).
    /// Each input gets one verdict: its emits, a rejection, or a failure — an input with
    /// any bad entry (undeclared output, a header key that is not UTF-8, too many outputs)
    /// fails as a whole and none of its emits is kept. An entry that breaks the stream's
    /// framing (a record whose lengths disagree, an unreadable entry, indices out of order)
    /// fails the call: nothing after it can be attributed to an input with certainty.
    pub(super) fn collect(
        &self,
        buf: Bytes,
        input: &BatchInput<'_>,
        bounds: &mut Option<Vec<usize>>,
        first: usize,
        count: u32,
        out: &mut BatchOutput,
    ) -> Result<(), String> {
        let outputs = self.cfg.outputs.len() as u32;
        // Positions are u32: an input or output section past 4 GiB is refused.
        if buf.len() > u32::MAX as usize || input.records.len() > u32::MAX as usize {
            return Err("batch larger than 4 GiB".into());
        }
        let buffer = out.buffers.len() as u32;
        let max_per = self.cfg.limits.max_outputs_per_record as usize;
        let mut emitted = Vec::with_capacity(count as usize);
        let mut rejected = Vec::new();
        let mut failed = Vec::new();
        // The records of splice entries, built here (buffer `buffer + 1`).
        let mut spliced = Vec::new();
        // Emits of the current input so far, and whether it already has its verdict.
        let (mut cur, mut cur_emits, mut cur_done) = (u32::MAX, 0usize, false);
        let mut cur_start = 0usize;
        for e in Entries::new(&buf, count) {
            let e = e.map_err(|e| e.to_string())?;
            let idx = e.input();
            let abs = first as u32 + idx;
            // A record that does not fill its own length exactly means the stream lost its
            // framing: what follows it may be another input's entries read askew. The call
            // fails as a whole (even if this input already has its verdict) and its records
            // are retried alone, so no input's verdict rests on bytes read after it.
            let content = match e {
                Entry::Emit { record, .. } => match check_record(record.0) {
                    Err(RecordFault::Framing(why)) => {
                        return Err(format!(
                            "malformed output for input {abs}: {why} (the entries after it cannot be read)"
                        ));
                    }
                    Err(RecordFault::Content(why)) => Err(why),
                    Ok(()) => Ok(()),
                },
                _ => Ok(()),
            };
            if idx != cur {
                (cur, cur_emits, cur_done, cur_start) = (idx, 0, false, emitted.len());
            }
            if cur_done {
                continue;
            }
            let mut fail = |emitted: &mut Vec<Emitted>, reason: String| {
                emitted.truncate(cur_start);
                failed.push((abs, reason));
            };
            match e {
                Entry::Reject { reason, .. } => {
                    emitted.truncate(cur_start);
                    rejected.push((abs, bound_str(reason)));
                    cur_done = true;
                }
                Entry::Emit { output, .. }
                | Entry::Pass { output, .. }
                | Entry::Splice { output, .. }
                    if output >= outputs =>
                {
                    fail(
                        &mut emitted,
                        format!(
                            "malformed output: emitted to output {output}, but the deployment declares {outputs} output(s)"
                        ),
                    );
                    cur_done = true;
                }
                Entry::Emit { .. } | Entry::Pass { .. } | Entry::Splice { .. }
                    if cur_emits >= max_per =>
                {
                    fail(
                        &mut emitted,
                        format!(
                            "emitted more than {max_per} records for one input (max_outputs_per_record)"
                        ),
                    );
                    cur_done = true;
                }
                Entry::Pass { .. } | Entry::Splice { .. } if input.kind == CallKind::Timers => {
                    fail(
                        &mut emitted,
                        "malformed output: a pass or splice entry for a timer, which has no input record"
                            .into(),
                    );
                    cur_done = true;
                }
                Entry::Splice { output, spans, .. } => {
                    match splice(input, bounds, abs, &spans, &mut spliced)? {
                        Ok((start, end)) => {
                            cur_emits += 1;
                            emitted.push(Emitted {
                                input: abs,
                                output,
                                buffer: buffer + 1,
                                start,
                                end,
                            });
                        }
                        Err(why) => {
                            fail(&mut emitted, format!("malformed output: {why}"));
                            cur_done = true;
                        }
                    }
                }
                Entry::Pass { output, .. } => {
                    let (s, e) = input_range(input, bounds, abs, "pass")?;
                    cur_emits += 1;
                    emitted.push(Emitted {
                        input: abs,
                        output,
                        buffer: 0,
                        start: s as u32,
                        end: e as u32,
                    });
                }
                Entry::Emit { output, record, .. } => {
                    if let Err(why) = content {
                        fail(&mut emitted, format!("malformed output: {why}"));
                        cur_done = true;
                        continue;
                    }
                    cur_emits += 1;
                    let start = offset_in(&buf, record.0)
                        .ok_or("emitted record outside the output buffer")?;
                    emitted.push(Emitted {
                        input: abs,
                        output,
                        buffer,
                        start: start as u32,
                        end: (start + record.0.len()) as u32,
                    });
                }
            }
        }
        out.buffers.push(buf);
        if !spliced.is_empty() {
            out.buffers.push(Bytes::from(spliced));
        }
        out.emitted.append(&mut emitted);
        out.rejected.append(&mut rejected);
        out.failed.append(&mut failed);
        Ok(())
    }
}

/// Where input `abs` lies in the call's records (the bounds found once per call); an
/// error naming the `kind` of entry when it does not decode.
fn input_range(
    input: &BatchInput<'_>,
    bounds: &mut Option<Vec<usize>>,
    abs: u32,
    kind: &str,
) -> Result<(usize, usize), String> {
    let b = bounds.get_or_insert_with(|| item_bounds(input));
    match (b.get(abs as usize), b.get(abs as usize + 1)) {
        (Some(&s), Some(&e)) => Ok((s, e)),
        _ => Err(format!(
            "{kind} entry for input {abs}, which does not decode"
        )),
    }
}

/// Builds the record of a splice entry for input `abs` at the end of `spliced`: its
/// place there, or why the spans do not fit (that input fails); an error when the input
/// does not decode or the call's spliced records pass 4 GiB (the call fails).
fn splice(
    input: &BatchInput<'_>,
    bounds: &mut Option<Vec<usize>>,
    abs: u32,
    spans: &Spans<'_>,
    spliced: &mut Vec<u8>,
) -> Result<Result<(u32, u32), String>, String> {
    let (s, e) = input_range(input, bounds, abs, "splice")?;
    let start = spliced.len();
    let raw = input.records.get(s..e).ok_or("input out of range")?;
    if let Err(why) = splice_record_into(raw, spans, spliced) {
        return Ok(Err(why));
    }
    if spliced.len() > u32::MAX as usize {
        return Err("spliced records past 4 GiB".into());
    }
    Ok(Ok((start as u32, spliced.len() as u32)))
}

/// Checks an emitted record the way a Kafka consumer will read it: every length within
/// the record, and header keys in UTF-8.
fn check_record(raw: &[u8]) -> Result<(), RecordFault> {
    let view =
        RecordView::read(&mut Reader::new(raw)).map_err(|e| RecordFault::Framing(e.to_string()))?;
    for h in view.headers() {
        if std::str::from_utf8(h.key).is_err() {
            return Err(RecordFault::Content("a header key is not UTF-8".into()));
        }
    }
    Ok(())
}

/// What is wrong with an emitted record.
enum RecordFault {
    /// Its lengths disagree: the entry stream's framing is lost from it on.
    Framing(String),
    /// It reads, but a consumer could not take it (the rest of the stream is sound).
    Content(String),
}

/// Where `part`, a subslice of `whole`, starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// Byte offsets where each record (or timer) starts, plus the end: `count + 1` entries.
pub(super) fn item_bounds(input: &BatchInput<'_>) -> Vec<usize> {
    let mut r = Reader::new(&input.records);
    let mut bounds = Vec::with_capacity(input.count as usize + 1);
    bounds.push(0);
    for _ in 0..input.count {
        let next = match input.kind {
            CallKind::Records => sluice_sdk::codec::next_raw(&mut r).map(|_| ()),
            CallKind::Timers => sluice_sdk::state::read_timer(&mut r).map(|_| ()),
        };
        if next.is_err() {
            break;
        }
        bounds.push(r.position());
    }
    bounds
}
