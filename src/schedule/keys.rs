//! Reading a schedule's TOML table: typed getters, error messages of the form
//! `schedule.KEY = VALUE: RULE`, and unknown keys rejected before any value is read (with the
//! closest valid key: a misspelt `lr_maxx` is named as such, not reported as `lr_max` missing).

use crate::error::input_error;
use anyhow::Result;
use std::collections::BTreeSet;
use toml::{Table, Value};

/// A schedule table being read. Every getter marks its key as known; [`Keys::finish`] rejects
/// the keys that no getter asked for.
pub(crate) struct Keys<'a> {
    table: &'a Table,
    /// Dotted path of the table, e.g. `schedule` or `schedule.schedules[1]`.
    path: String,
    /// The family name, for messages (`kind = "sgdr"`).
    kind: String,
    /// Every key the family may read (empty until [`Keys::declare`]); a getter asking for
    /// another key is a bug in the family.
    declared: Vec<&'static str>,
    known: BTreeSet<String>,
}

impl<'a> Keys<'a> {
    /// Start reading `table`, whose keys are reported as `PATH.KEY`.
    pub(crate) fn new(table: &'a Table, path: &str) -> Self {
        Keys {
            table,
            path: path.to_string(),
            kind: String::new(),
            declared: Vec::new(),
            known: BTreeSet::new(),
        }
    }

    /// The table's dotted path (`schedule`, `schedule.schedules[0]`).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Record the family name used in "missing key" and "unknown key" messages.
    pub(crate) fn set_kind(&mut self, kind: &str) {
        self.kind = kind.to_string();
    }

    /// `PATH.KEY`.
    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}.{}", self.path, key)
    }

    /// Declare every key the family may read (its own, the warmup keys, `kind` and its
    /// aliases) and reject, before any value is read, a key of the table that is none of
    /// them, naming the closest declared key.
    pub(crate) fn declare(&mut self, groups: &[&[&'static str]]) -> Result<()> {
        self.declared = groups.iter().flat_map(|g| g.iter().copied()).collect();
        if let Some(key) = self
            .table
            .keys()
            .find(|k| !self.declared.contains(&k.as_str()))
        {
            return Err(self.unknown(key, &self.declared));
        }
        Ok(())
    }

    /// `PATH.KEY = VALUE: unknown key for kind = "K"; did you mean X? (known keys: ...)`.
    fn unknown(&self, key: &str, valid: &[&str]) -> anyhow::Error {
        let what = if self.kind.is_empty() {
            String::new()
        } else {
            format!(" for kind = \"{}\"", self.kind)
        };
        let rule = crate::util::spelling::unknown_key_rule(key, &what, valid.iter().copied());
        self.bad(key, rule)
    }

    fn mark(&mut self, key: &str) {
        assert!(
            self.declared.is_empty() || self.declared.contains(&key),
            "schedule family {:?} reads key {key:?}, which it does not declare",
            self.kind
        );
        self.known.insert(key.to_string());
    }

    /// True when the key is present (and marks it known).
    pub(crate) fn has(&mut self, key: &str) -> bool {
        self.mark(key);
        self.table.contains_key(key)
    }

    fn get(&mut self, key: &str) -> Option<&'a Value> {
        self.mark(key);
        self.table.get(key)
    }

    /// Refuse more than one of `keys` (alternative spellings of one setting, such as a length
    /// in steps or in epochs): the error names the second one given and lists those given.
    pub(crate) fn at_most_one(&mut self, keys: &[&str]) -> Result<()> {
        let given: Vec<&str> = keys.iter().copied().filter(|k| self.has(k)).collect();
        if given.len() > 1 {
            return Err(self.bad(
                given[1],
                format!("{} are exclusive; give one", given.join(" and ")),
            ));
        }
        Ok(())
    }

    /// An input error about a present key: `PATH.KEY = VALUE: RULE`.
    pub(crate) fn bad(&self, key: &str, rule: impl std::fmt::Display) -> anyhow::Error {
        match self.table.get(key) {
            Some(v) => input_error(format!("{} = {}: {rule}", self.name(key), show(v))),
            None => input_error(format!("{}: {rule}", self.name(key))),
        }
    }

    /// An input error about a required key that is absent.
    pub(crate) fn missing(&self, key: &str) -> anyhow::Error {
        if self.kind.is_empty() {
            input_error(format!("{}: missing", self.name(key)))
        } else {
            input_error(format!(
                "{}: missing; kind = \"{}\" requires it",
                self.name(key),
                self.kind
            ))
        }
    }

    /// An optional finite number (TOML integer or float).
    pub(crate) fn f64(&mut self, key: &str) -> Result<Option<f64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let x = match v {
            Value::Float(x) => *x,
            Value::Integer(i) => *i as f64,
            _ => return Err(self.bad(key, "must be a number")),
        };
        if !x.is_finite() {
            return Err(self.bad(key, "must be a finite number"));
        }
        Ok(Some(x))
    }

    /// A required finite number.
    pub(crate) fn req_f64(&mut self, key: &str) -> Result<f64> {
        self.f64(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional non-negative integer (a TOML integer; floats are refused so that step counts
    /// stay exact).
    pub(crate) fn u64(&mut self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::Integer(i) if *i >= 0 => Ok(Some(*i as u64)),
            Value::Integer(_) => Err(self.bad(key, "must be >= 0")),
            _ => Err(self.bad(key, "must be an integer")),
        }
    }

    /// An optional boolean.
    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(key, "must be true or false")),
        }
    }

    /// An optional string that must be one of `choices`.
    pub(crate) fn choice(
        &mut self,
        key: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => match choices.iter().find(|c| **c == s.as_str()) {
                Some(c) => Ok(Some(*c)),
                None => Err(self.bad(
                    key,
                    format!(
                        "must be one of {}{}",
                        quoted(choices),
                        crate::util::did_you_mean(s, choices.iter().copied())
                    ),
                )),
            },
            Some(_) => Err(self.bad(key, format!("must be a string, one of {}", quoted(choices)))),
        }
    }

    /// An optional array of finite numbers.
    pub(crate) fn f64_list(&mut self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.bad(key, "must be an array of numbers"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let x = match item {
                Value::Float(x) => *x,
                Value::Integer(i) => *i as f64,
                _ => return Err(self.bad(key, "must be an array of numbers")),
            };
            if !x.is_finite() {
                return Err(self.bad(key, "must hold finite numbers"));
            }
            out.push(x);
        }
        Ok(Some(out))
    }

    /// An optional table (a nested schedule).
    pub(crate) fn table(&mut self, key: &str) -> Result<Option<&'a Table>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(self.bad(key, "must be a table (a schedule: { kind = ..., ... })")),
        }
    }

    /// An optional array of tables (`[[schedule.schedules]]` or an array of inline tables).
    pub(crate) fn tables(&mut self, key: &str) -> Result<Option<Vec<&'a Table>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.bad(key, "must be an array of tables"));
        };
        items
            .iter()
            .map(|item| match item {
                Value::Table(t) => Ok(t),
                _ => Err(self.bad(key, "must be an array of tables")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Fail with `PATH.KEY = VALUE: RULE` unless `ok`.
    pub(crate) fn ensure(&self, ok: bool, key: &str, rule: impl std::fmt::Display) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.bad(key, rule))
        }
    }

    /// A required learning rate: a number > 0.
    pub(crate) fn lr(&mut self, key: &str) -> Result<f64> {
        let v = self.req_f64(key)?;
        self.ensure(v > 0.0, key, "must be > 0")?;
        Ok(v)
    }

    /// An optional lower learning rate: >= 0 and <= `upper` (the value of `upper_key`).
    pub(crate) fn lr_floor(
        &mut self,
        key: &str,
        default: f64,
        upper_key: &str,
        upper: f64,
    ) -> Result<f64> {
        let v = self.f64(key)?.unwrap_or(default);
        self.ensure(v >= 0.0, key, "must be >= 0")?;
        let rule = format!(
            "must be <= {} ({})",
            self.name(upper_key),
            crate::util::fmt_f64(upper)
        );
        self.ensure(v <= upper, key, rule)?;
        Ok(v)
    }

    /// An optional number > 0.
    pub(crate) fn positive(&mut self, key: &str, default: f64) -> Result<f64> {
        let v = self.f64(key)?.unwrap_or(default);
        self.ensure(v > 0.0, key, "must be > 0")?;
        Ok(v)
    }

    /// An optional fraction in the open interval (0, 1).
    pub(crate) fn fraction(&mut self, key: &str, default: f64) -> Result<f64> {
        let v = self.f64(key)?.unwrap_or(default);
        self.ensure(v > 0.0 && v < 1.0, key, "must be in (0, 1)")?;
        Ok(v)
    }

    /// Reject a key that is present but has no effect in this configuration.
    pub(crate) fn forbid(&mut self, key: &str, why: &str) -> Result<()> {
        if self.has(key) {
            return Err(self.bad(key, why));
        }
        Ok(())
    }

    /// Like [`Keys::forbid`], but accept the key, with a one-line warning, when its value is
    /// `neutral`: the value in effect anyway, which a config ported from another library may
    /// spell out (PyTorch's `CyclicLR` takes `gamma = 1.0` in every mode).
    pub(crate) fn forbid_unless(&mut self, key: &str, neutral: Value, why: &str) -> Result<()> {
        if !self.has(key) {
            return Ok(());
        }
        let v = &self.table[key];
        let same = match (v, &neutral) {
            (Value::Integer(a), Value::Float(b)) | (Value::Float(b), Value::Integer(a)) => {
                *a as f64 == *b
            }
            _ => *v == neutral,
        };
        if same {
            crate::util::warn_once(&format!(
                "warning: {} = {}: {why}; accepted, as this value changes nothing",
                self.name(key),
                show(v)
            ));
            return Ok(());
        }
        Err(self.bad(
            key,
            format!(
                "{why} (here only {key} = {}, which changes nothing, is accepted)",
                show(&neutral)
            ),
        ))
    }

    /// Reject every key that no getter asked for (a backstop: [`Keys::declare`] has refused
    /// undeclared keys already).
    pub(crate) fn finish(self) -> Result<()> {
        if let Some(key) = self.table.keys().find(|k| !self.known.contains(k.as_str())) {
            let known: Vec<&str> = self.known.iter().map(String::as_str).collect();
            return Err(self.unknown(key, &known));
        }
        Ok(())
    }
}

/// A TOML value as the user wrote it (strings quoted, arrays bracketed).
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Table(_) => "{...}".to_string(),
        _ => v.to_string(),
    }
}

/// `"a", "b", "c"`.
pub(crate) fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> Table {
        s.parse().unwrap()
    }

    #[test]
    fn messages_name_key_value_and_rule() {
        let t = table("a = \"x\"\nb = 1.5\nc = [1, \"z\"]\nd = -3");
        let mut k = Keys::new(&t, "schedule");
        k.set_kind("sgdr");
        assert_eq!(
            k.f64("a").unwrap_err().to_string(),
            "schedule.a = \"x\": must be a number"
        );
        assert_eq!(
            k.u64("b").unwrap_err().to_string(),
            "schedule.b = 1.5: must be an integer"
        );
        assert_eq!(
            k.f64_list("c").unwrap_err().to_string(),
            "schedule.c = [1, \"z\"]: must be an array of numbers"
        );
        assert_eq!(
            k.u64("d").unwrap_err().to_string(),
            "schedule.d = -3: must be >= 0"
        );
        assert_eq!(
            k.req_f64("e").unwrap_err().to_string(),
            "schedule.e: missing; kind = \"sgdr\" requires it"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let t = table("lr = 0.1\nlr_mx = 2");
        let mut k = Keys::new(&t, "schedule.schedules[1]");
        k.set_kind("constant");
        assert_eq!(k.f64("lr").unwrap(), Some(0.1));
        let e = k.finish().unwrap_err();
        assert!(crate::error::is_input_error(&e));
        assert_eq!(
            e.to_string(),
            "schedule.schedules[1].lr_mx = 2: unknown key for kind = \"constant\" (known keys: lr)"
        );
    }
}
