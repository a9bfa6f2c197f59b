fn main() {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("host") => std::process::exit(mdguard::host::main(args)),
        _ => println!("mdguard {}", env!("CARGO_PKG_VERSION")),
    }
}
