fn main() {
    println!("herald: being written");
}
