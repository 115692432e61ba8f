pub fn cmd_bench(_a: &[String]) -> crate::sh::Result<i32> {
    Err("todo".into())
}
