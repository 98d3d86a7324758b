//! Framing of a prompt-mode session: after `prompt`, HAProxy ends every reply with `"\n> "`.
//!
//! The delimiter is what separates replies, not the empty line HAProxy normally prints after a
//! message: on 2.6 a few messages (`Server deleted.`, the "dynamic load balancing" refusal of
//! `add server`, `No such backend.` from `add server`) lack their trailing newline, so in
//! non-interactive mode they run into the next reply, while the prompt still follows each one.
//!
//! A reply body never holds `"\n> "` for the commands swarm-lb sends: `show servers state`
//! rows start with a digit, `show map` rows with `0x`, `show info` lines with a field name.

/// What HAProxy prints after each reply in prompt mode.
pub const PROMPT: &[u8] = b"\n> ";

/// An incremental splitter of a prompt-mode byte stream into reply bodies.
///
/// Bytes read from the socket are appended to [`Replies::buffer`]; [`Replies::next_reply`]
/// then yields each complete body (the bytes before a delimiter) without copying. A delimiter
/// split across two reads is found once the rest arrives.
#[derive(Debug, Default)]
pub struct Replies {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    /// Where the delimiter search resumes: bytes before it hold no (start of a) delimiter.
    scan: usize,
}

impl Replies {
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer to append freshly read bytes to. Drops the bytes already handed out first,
    /// so the buffer holds at most one partial reply plus what the last read brought.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        &mut self.buf
    }

    /// The next complete reply body, if the buffer holds one.
    pub fn next_reply(&mut self) -> Option<&[u8]> {
        match memchr::memmem::find(&self.buf[self.scan..], PROMPT) {
            Some(at) => {
                let end = self.scan + at;
                let body = self.start..end;
                self.start = end + PROMPT.len();
                self.scan = self.start;
                Some(&self.buf[body])
            }
            None => {
                // The last bytes may be the start of a delimiter: look there again once more
                // bytes arrive.
                let partial = PROMPT.len() - 1;
                self.scan = self.buf.len().saturating_sub(partial).max(self.start);
                None
            }
        }
    }

    /// Bytes received but not yet handed out as a complete reply.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Gives back the memory a large reply left: the buffer keeps the bytes not yet handed out
    /// and at most `keep` bytes of capacity beyond them. A `show servers state` of every
    /// backend is ~30 MB at 10,000 services; without this the buffer would hold that much
    /// for good after the first one.
    pub fn shrink(&mut self, keep: usize) {
        if self.buf.capacity() > keep.max(self.pending()) {
            self.buffer();
            let len = self.buf.len();
            self.buf.shrink_to(keep.max(len));
        }
    }

    /// Forget everything (a new connection starts a new stream).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scan = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_reply_leaves_no_large_buffer_behind_once_handed_out() {
        let mut r = Replies::new();
        r.buffer().extend(std::iter::repeat_n(b'1', 1 << 20));
        r.buffer().extend_from_slice(b"\n> partial");
        assert_eq!(r.next_reply().map(<[u8]>::len), Some(1 << 20));
        r.shrink(4096);
        assert!(r.buf.capacity() <= 4096, "{}", r.buf.capacity());
        // What was not handed out stays, and the stream goes on.
        r.buffer().extend_from_slice(b" reply\n> ");
        assert_eq!(r.next_reply(), Some(&b"partial reply"[..]));
    }

    fn all(replies: &mut Replies) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(body) = replies.next_reply() {
            out.push(String::from_utf8_lossy(body).into_owned());
        }
        out
    }

    #[test]
    fn bodies_are_the_text_before_each_prompt_including_empty_and_unterminated_ones() {
        let mut r = Replies::new();
        r.buffer()
            .extend_from_slice(b"\n> No such backend.\n> New server registered.\n\n> \n> 1\n#");
        assert_eq!(
            all(&mut r),
            ["", "No such backend.", "New server registered.\n", ""]
        );
        assert_eq!(r.pending(), 3);
    }

    #[test]
    fn a_delimiter_split_across_reads_is_found_once_complete() {
        let stream = b"IP changed from 'a' to 'b'\n\n> \n> x\n> ";
        for cut_a in 0..stream.len() {
            for cut_b in cut_a..stream.len() {
                let mut r = Replies::new();
                let mut got = Vec::new();
                for part in [&stream[..cut_a], &stream[cut_a..cut_b], &stream[cut_b..]] {
                    r.buffer().extend_from_slice(part);
                    got.extend(all(&mut r));
                }
                assert_eq!(
                    got,
                    ["IP changed from 'a' to 'b'\n", "", "x"],
                    "cuts {cut_a} {cut_b}"
                );
                assert_eq!(r.pending(), 0);
            }
        }
    }

    #[test]
    fn a_greater_than_sign_inside_a_line_is_not_a_delimiter() {
        let mut r = Replies::new();
        r.buffer().extend_from_slice(b"a > b\n>x\n> ");
        assert_eq!(all(&mut r), ["a > b\n>x"]);
    }
}
