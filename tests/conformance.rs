//! The conformance scenarios against the built-in component, and against a
//! deliberately different policy, whose one difference they must pinpoint.

use chatstore_host::Metadata;
use chatstore_testkit::conformance::{self, Failure, Runner, Scenario, Verdict};
use std::collections::BTreeMap;
use std::path::Path;

/// At most three attachments per chat (`tests/components/file-limit`).
const FILE_LIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/file-limit.wasm"));

fn scenarios() -> Vec<Scenario> {
    conformance::built_in().expect("the built-in scenarios parse")
}

/// Every scenario's verdict, by name.
fn verdicts(runner: &Runner) -> BTreeMap<String, Verdict> {
    scenarios()
        .iter()
        .map(|s| (s.name().to_owned(), runner.run(s).expect("scenario runs")))
        .collect()
}

fn failures(verdicts: &BTreeMap<String, Verdict>) -> Vec<(&str, &Failure)> {
    verdicts
        .iter()
        .filter_map(|(name, verdict)| match verdict {
            Verdict::Failed(failure) => Some((name.as_str(), failure)),
            Verdict::Passed { .. } => None,
        })
        .collect()
}

#[test]
fn the_built_in_component_passes_every_scenario() {
    for metadata in [Metadata::Sqlite, Metadata::Memory] {
        let verdicts = verdicts(&Runner::new().metadata(metadata.clone()));
        assert_eq!(failures(&verdicts), [], "{metadata:?}");
        let steps: usize = verdicts
            .values()
            .map(|v| match v {
                Verdict::Passed { steps } => *steps,
                Verdict::Failed(_) => 0,
            })
            .sum();
        println!(
            "{metadata:?}: {} scenarios, {steps} steps passed",
            verdicts.len()
        );
        assert_eq!(steps, scenarios().iter().map(Scenario::len).sum::<usize>());
    }
}

#[test]
fn the_suite_pinpoints_where_the_file_limit_policy_differs() {
    let verdicts = verdicts(&Runner::new().component(FILE_LIMIT));
    let failures = failures(&verdicts);
    for (name, failure) in &failures {
        println!("{name}: {failure}");
    }
    // The fourth new name in one chat: the only rule the policy changes.
    let [("many-attachments", failure)] = failures.as_slice() else {
        panic!("expected one difference, in many-attachments; got {failures:?}");
    };
    assert_eq!(failure.step, 9);
    assert_eq!(failure.action, "call upload-attachment");
    assert_eq!(failure.expected, "ok");
    assert!(
        failure
            .actual
            .starts_with("error workspace_quota_exceeded ("),
        "{}",
        failure.actual
    );
    assert_eq!(
        verdicts.len(),
        scenarios().len(),
        "every other scenario ran to the end and passed"
    );
}

#[test]
fn the_file_limit_rule_has_its_own_scenario_which_the_built_in_policy_fails() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("components/file-limit/scenarios");
    let scenarios = conformance::load_dir(&dir).expect("file-limit scenarios");
    for scenario in &scenarios {
        let verdict = Runner::new()
            .component(FILE_LIMIT)
            .run(scenario)
            .expect("runs");
        assert!(matches!(verdict, Verdict::Passed { .. }), "{verdict:?}");
    }
    let built_in = Runner::new().run(&scenarios[0]).expect("runs");
    let Verdict::Failed(failure) = built_in else {
        panic!("the built-in policy has no file limit, yet passed");
    };
    assert_eq!(failure.step, 6);
    assert!(
        failure
            .expected
            .starts_with("error workspace_quota_exceeded")
    );
    assert!(failure.actual.starts_with("ok {"), "{}", failure.actual);
}

#[test]
fn a_wrong_expectation_fails_at_its_step() {
    // The chats scenario with one expected number changed.
    let text = std::fs::read_to_string(scenario_dir().join("chats.json")).expect("chats.json");
    assert!(text.contains(r#""used-bytes": 15"#));
    let wrong = Scenario::parse(
        "chats",
        &text.replace(r#""used-bytes": 15"#, r#""used-bytes": 16"#),
    )
    .expect("still a scenario");
    let Verdict::Failed(failure) = Runner::new().run(&wrong).expect("runs") else {
        panic!("a wrong expectation passed");
    };
    assert_eq!(failure.step, 15);
    assert_eq!(failure.action, "call get-usage");
    assert!(
        failure.expected.contains(r#""used-bytes":16"#),
        "{}",
        failure.expected
    );
    assert!(
        failure.actual.contains(r#""used-bytes":15"#),
        "{}",
        failure.actual
    );

    // An error where success is expected, and the wrong error code.
    let refused = Scenario::parse(
        "refused",
        r#"{"rule": "r", "ids": ["alice"], "steps": [
            {"call": "create-chat", "user-id": "$alice"},
            {"call": "get-workspace", "user-id": "$alice", "expect": {"error": "chat_not_found"}}
        ]}"#,
    )
    .expect("parses");
    let Verdict::Failed(failure) = Runner::new().run(&refused).expect("runs") else {
        panic!("a refused call passed");
    };
    assert_eq!((failure.step, failure.expected.as_str()), (1, "ok"));
    assert!(failure.actual.starts_with("error workspace_not_found ("));
}

#[test]
fn a_scenario_that_names_nothing_is_an_error_not_a_verdict() {
    let scenario = Scenario::parse(
        "unbound",
        r#"{"rule": "r", "steps": [{"call": "get-workspace", "user-id": "$nobody"}]}"#,
    )
    .expect("parses");
    let error = Runner::new().run(&scenario).expect_err("unbound reference");
    assert_eq!(
        error.message,
        "step 1: $nobody: nothing is bound to \"nobody\""
    );
}

#[test]
fn the_files_on_disk_are_the_built_in_scenarios() {
    let on_disk = conformance::load_dir(&scenario_dir()).expect("scenario files");
    let names = |s: &[Scenario]| {
        s.iter()
            .map(|s| (s.name().to_owned(), s.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&on_disk), names(&scenarios()));
}

fn scenario_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/scenarios")
}
