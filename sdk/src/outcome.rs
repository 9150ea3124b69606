//! What happens to an input record ([`Outcome`]) and where its emissions go ([`Target`]),
//! with the per-batch scratch buffer that rewritten values and splices are written into.

use crate::{OutRecord, codec};

/// Which output an emitted record goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The first declared output.
    Default,
    /// An output topic by name; it must be one the deployment declared.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Emission {
    /// The input record, byte for byte.
    Input(Target),
    /// The input record's key, headers and timestamp with a new value.
    InputValue(Target, Vec<u8>),
    /// The same, with the value at `start..end` of the batch's scratch buffer.
    InputScratch(Target, usize, usize),
    /// The input record with spans of its value replaced: `count` spans encoded at
    /// `start..end` of the scratch buffer (a splice entry, 0.2.2).
    InputSplice(Target, usize, usize, u32),
    Record(Target, OutRecord),
}

thread_local! {
    /// New values written by [`Outcome::keep_rewritten`] during one batch; emptied (its
    /// capacity kept) when the next batch starts.
    pub(crate) static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Counts `process` calls, so per-batch caches (see [`text::Pattern::find_in`]) know
    /// when they are stale.
    static BATCH: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of the running `process` call.
#[cfg(target_arch = "wasm32")]
pub(crate) fn batch_number() -> u64 {
    BATCH.with(std::cell::Cell::get)
}

/// Empties the scratch buffer for a new batch, giving back memory after an outsized one.
pub(crate) fn reset_scratch() {
    BATCH.with(|b| b.set(b.get() + 1));
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.capacity() > 64 << 20 {
            *s = Vec::new();
        } else {
            s.clear();
        }
    });
}

/// What happens to one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome(pub(crate) OutcomeKind);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutcomeKind {
    Drop,
    Reject(String),
    /// One emission (the common case, without a heap allocation for the list).
    One(Emission),
    Many(Vec<Emission>),
}

impl Outcome {
    /// Pass the input record on unchanged to the default output (no copy is made of it
    /// until it is written to the output buffer).
    pub fn keep() -> Self {
        Outcome(OutcomeKind::One(Emission::Input(Target::Default)))
    }

    /// Pass the input record on unchanged to a named output.
    pub fn keep_to(output: &str) -> Self {
        Outcome(OutcomeKind::One(Emission::Input(Target::Named(
            output.into(),
        ))))
    }

    /// Emit the input record with a new value (key, headers and timestamp kept) to the
    /// default output: `Outcome::emit(record.to_owned().with_value(v))` without copying
    /// the rest of the record first.
    pub fn keep_with_value(value: impl Into<Vec<u8>>) -> Self {
        Outcome(OutcomeKind::One(Emission::InputValue(
            Target::Default,
            value.into(),
        )))
    }

    /// Emit the input record with a new value (key, headers and timestamp kept) that
    /// `write` appends to a buffer the SDK reuses batch after batch — no allocation per
    /// record. `write` returns whether it wrote a new value; when it returns false the
    /// input is kept unchanged (what it appended is ignored).
    ///
    /// ```
    /// # use sluice_sdk::Outcome;
    /// let upper = |v: &[u8]| Outcome::keep_rewritten(|buf| {
    ///     buf.extend(v.iter().map(u8::to_ascii_uppercase));
    ///     true
    /// });
    /// # let _ = upper(b"x");
    /// ```
    pub fn keep_rewritten(write: impl FnOnce(&mut Vec<u8>) -> bool) -> Self {
        SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            let start = buf.len();
            if write(&mut buf) {
                let end = buf.len();
                Outcome(OutcomeKind::One(Emission::InputScratch(
                    Target::Default,
                    start,
                    end,
                )))
            } else {
                buf.truncate(start);
                Outcome::keep()
            }
        })
    }

    /// Emit the input record with spans of its value replaced (key, headers and timestamp
    /// kept) to the default output: `edit` names the spans ([`Splice::replace`], in
    /// increasing order) and only they cross to the host, which builds the new value —
    /// a plugin that masks a few bytes of a large value never copies the rest. With no
    /// span the input is kept unchanged.
    ///
    /// ```
    /// # use sluice_sdk::Outcome;
    /// // `secret` at 10..17 of the value becomes `*******`.
    /// let o = Outcome::keep_spliced(|s| s.replace(10, 17, b"*******"));
    /// # let _ = o;
    /// ```
    pub fn keep_spliced(edit: impl FnOnce(&mut Splice<'_>)) -> Self {
        SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            let start = buf.len();
            let mut sp = Splice {
                buf: &mut buf,
                count: 0,
            };
            edit(&mut sp);
            let count = sp.count;
            if count == 0 {
                buf.truncate(start);
                return Outcome::keep();
            }
            let end = buf.len();
            Outcome(OutcomeKind::One(Emission::InputSplice(
                Target::Default,
                start,
                end,
                count,
            )))
        })
    }

    /// Emit a record to the default output.
    pub fn emit(record: OutRecord) -> Self {
        Outcome(OutcomeKind::One(Emission::Record(Target::Default, record)))
    }

    /// Emit a record to a named output.
    pub fn emit_to(output: &str, record: OutRecord) -> Self {
        Outcome(OutcomeKind::One(Emission::Record(
            Target::Named(output.into()),
            record,
        )))
    }

    /// Also emit another record (fan-out).
    pub fn and_emit(mut self, target: Target, record: OutRecord) -> Self {
        let new = Emission::Record(target, record);
        self.0 = match std::mem::replace(&mut self.0, OutcomeKind::Drop) {
            OutcomeKind::Many(mut v) => {
                v.push(new);
                OutcomeKind::Many(v)
            }
            OutcomeKind::One(first) => OutcomeKind::Many(vec![first, new]),
            OutcomeKind::Drop | OutcomeKind::Reject(_) => OutcomeKind::One(new),
        };
        self
    }

    /// Drop the record: nothing is emitted and nothing is dead-lettered.
    pub fn drop() -> Self {
        Outcome(OutcomeKind::Drop)
    }

    /// Send the record to the dead-letter topic with a reason.
    pub fn reject(reason: impl Into<String>) -> Self {
        Outcome(OutcomeKind::Reject(reason.into()))
    }
}

/// The edits of an input record's value, for [`Outcome::keep_spliced`].
pub struct Splice<'b> {
    buf: &'b mut Vec<u8>,
    count: u32,
}

impl Splice<'_> {
    /// Replaces `value[start..end]` (byte offsets into the input value; spans in
    /// increasing order, not overlapping) with `bytes`. Spans that do not fit the value
    /// fail the record.
    pub fn replace(&mut self, start: usize, end: usize, bytes: &[u8]) {
        self.replace_with(start, end, |out| out.extend_from_slice(bytes));
    }

    /// Replaces `value[start..end]` with what `write` appends.
    pub fn replace_with(&mut self, start: usize, end: usize, write: impl FnOnce(&mut Vec<u8>)) {
        codec::put_uvarint(self.buf, start as u64);
        codec::put_uvarint(self.buf, end as u64);
        let at = self.buf.len();
        write(self.buf);
        let n = self.buf.len() - at;
        let mut len = Vec::with_capacity(5);
        codec::put_uvarint(&mut len, n as u64);
        self.buf.splice(at..at, len);
        self.count += 1;
    }
}
