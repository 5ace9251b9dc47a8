//! Builds the deliberately broken guest plugins from source for the sandbox tests.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("..");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // The hostile guests share this crate; build_component watches only each guest's own files.
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("guests/common").display()
    );
    for guest in [
        "trap", "spin", "hog", "recurse", "panic", "flood", "liar", "caps",
    ] {
        let package = format!("setpoint-guest-{guest}");
        match setpoint_plugin_build::build_component(
            &package,
            &manifest.join("guests").join(guest),
            &root,
            &out,
        ) {
            Ok(path) => println!(
                "cargo:rustc-env=SETPOINT_GUEST_{}={}",
                guest.to_uppercase(),
                path.display()
            ),
            Err(error) => panic!("{error}"),
        }
    }
}
