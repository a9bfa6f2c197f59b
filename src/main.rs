fn main() {
    println!("mdguard {}", env!("CARGO_PKG_VERSION"));
}
