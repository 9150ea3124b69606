//! Routes each record to one of the deployment's outputs by a JSON field's value.
//!
//! Config: `field` (dotted path), `routes` (`value=output,...`; without it, a value that
//! names a declared output goes there), `default` (output for values without a route;
//! without it such records are rejected).

use std::collections::HashMap;

use sluice_sdk::{Error, Outcome, Record, json};

#[derive(Debug)]
pub struct Route {
    field: String,
    routes: HashMap<String, String>,
    default: Option<String>,
    outputs: Vec<String>,
}

pub fn setup() -> Result<Route, Error> {
    let get = sluice_sdk::config;
    let outputs = sluice_sdk::outputs();
    let mut routes = HashMap::new();
    for pair in get("routes")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (value, output) = pair
            .split_once('=')
            .ok_or_else(|| Error::new(format!("route {pair:?} is not value=output")))?;
        let output = output.trim().to_string();
        if !outputs.contains(&output) {
            return Err(Error::new(format!(
                "route target {output:?} is not a declared output {outputs:?}"
            )));
        }
        routes.insert(value.trim().to_string(), output);
    }
    let default = get("default");
    if let Some(d) = &default
        && !outputs.contains(d)
    {
        return Err(Error::new(format!(
            "default {d:?} is not a declared output {outputs:?}"
        )));
    }
    Ok(Route {
        field: get("field").ok_or_else(|| Error::new("config `field` is required"))?,
        routes,
        default,
        outputs,
    })
}

pub fn route(r: &Route, record: &Record) -> Result<Outcome, Error> {
    let doc = record.json()?;
    let value = json::path(&doc, &r.field).map(json::text);
    let target = value.as_ref().and_then(|v| {
        if r.routes.is_empty() {
            r.outputs.iter().find(|o| *o == v)
        } else {
            r.routes.get(v)
        }
    });
    match target.or(r.default.as_ref()) {
        Some(out) => Ok(Outcome::keep_to(out)),
        None => Ok(Outcome::reject(format!(
            "no route for {} = {}",
            r.field,
            value.as_deref().unwrap_or("(missing)")
        ))),
    }
}

sluice_sdk::export_transform!(route, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, route).run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn undeclared_route_target_fails_init() {
        let e = Harness::with_init(setup, route)
            .outputs(&["a"])
            .config("field", "x")
            .config("routes", "1=b")
            .try_run(&[])
            .unwrap_err();
        assert!(e.contains("not a declared output"), "{e}");
    }
}
