//! `iamwright validate` as CI runs it: exit codes and one line per problem.

use std::process::Command;

fn validate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iamwright"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn clean_manifests_exit_zero() {
    let boundary = "--required-permissions-boundary=arn:aws:iam::123456789012:policy/boundary";
    assert_eq!(
        validate(&[
            "-f",
            "tests/fixtures/validate/good",
            "--deny-action",
            "iam:*",
            boundary
        ]),
        (0, String::new())
    );
    assert_eq!(
        validate(&["-f", "examples"]).0,
        0,
        "the shipped examples validate"
    );
}

#[test]
fn every_problem_is_reported_with_file_object_and_field() {
    let (code, out) = validate(&[
        "-f",
        "tests/fixtures/validate/bad",
        "--deny-action",
        "iam:PassRole",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "tests/fixtures/validate/bad/binding.json:InstanceProfileBinding/both: spec.replaceExisting: must be of type boolean, got string",
            "tests/fixtures/validate/bad/policies.yaml:IamPolicy/lowercase-effect: spec.document.Statement[0].Effect: must be \"Allow\" or \"Deny\", got \"allow\"",
            "tests/fixtures/validate/bad/policies.yaml:IamPolicy/admin: spec.document.Statement[0].NotAction: allows every action it does not list, including \"iam:PassRole\", which the operator's --deny-action forbids",
        ]
    );
}
