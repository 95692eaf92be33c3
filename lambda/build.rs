//! `include_dir!` (src/lib.rs) embeds ../migrations, but on stable Rust cargo
//! cannot see that the macro read those files; without this, changing a
//! migration would not rebuild the function and a stale set would ship.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
