//! The diff's context: the JSON path being compared and the differences found there (Confluent's
//! `Context` without the memo, which lives with the comparison in `diff`).

/// One difference: its type and `#/`-path.
pub(super) type Diff = (&'static str, String);

pub(super) struct Ctx {
    pub(super) path: Vec<String>,
    pub(super) diffs: Vec<Diff>,
}

impl Ctx {
    pub(super) fn root() -> Ctx {
        Ctx {
            path: Vec::new(),
            diffs: Vec::new(),
        }
    }

    pub(super) fn sub(&self) -> Ctx {
        Ctx {
            path: self.path.clone(),
            diffs: Vec::new(),
        }
    }

    pub(super) fn path_string(&self) -> String {
        format!("#/{}", self.path.join("/"))
    }

    pub(super) fn add(&mut self, t: &'static str) {
        let p = self.path_string();
        self.diffs.push((t, p));
    }

    pub(super) fn add_at(&mut self, attribute: &str, t: &'static str) {
        self.path.push(attribute.to_string());
        self.add(t);
        self.path.pop();
    }

    pub(super) fn add_rebased(&mut self, relative: &[Diff]) {
        if self.path.is_empty() {
            self.diffs.extend(relative.iter().cloned());
            return;
        }
        let prefix = self.path_string();
        for (t, p) in relative {
            let rebased = if p.len() <= 2 {
                prefix.clone()
            } else {
                format!("{prefix}/{}", &p[2..])
            };
            self.diffs.push((t, rebased));
        }
    }

    pub(super) fn enter<R>(&mut self, segment: &str, f: impl FnOnce(&mut Ctx) -> R) -> R {
        self.path.push(segment.to_string());
        let r = f(self);
        self.path.pop();
        r
    }
}
