//! Random identifiers in lower-case hex, shared by key ids, account ids, secrets and
//! analysis ids, so they are generated and recognised one way.

/// `bytes` bytes from the operating system's generator, as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // the OS generator only fails on a broken system; nothing safe can be done without it
    getrandom::fill(&mut buf).expect("the operating system's random generator is available");
    hex::encode(buf)
}

/// Whether `s` is exactly `bytes` bytes written as lower-case hex (what `random_hex` makes).
pub(crate) fn is_lower_hex(s: &str, bytes: usize) -> bool {
    s.len() == 2 * bytes && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
