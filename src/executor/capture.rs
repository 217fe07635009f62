//! Bounded capture of a child's output: bytes past the cap are read and discarded, so
//! the child never blocks on a full pipe (spec §6.5).

use tokio::io::{AsyncRead, AsyncReadExt};

/// The marker appended to the rendering of a truncated capture.
pub const TRUNCATED_MARKER: &str = "\n[TRUNCATED due to size limit]";

/// What was captured from one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// At most the cap's worth of bytes.
    pub bytes: Vec<u8>,
    /// Whether bytes were discarded.
    pub truncated: bool,
}

impl Captured {
    /// Appends text (such as an exit description) within the cap.
    pub fn append(&mut self, text: &str, cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
    }

    /// Lossy text with the truncation marker when something was cut.
    pub fn rendered(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            text.push_str(TRUNCATED_MARKER);
        }
        text
    }
}

/// Reads `reader` to its end, keeping the first `cap` bytes.
pub async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Captured {
    let mut captured = Captured::default();
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(captured.bytes.len());
                if n > room {
                    captured.truncated = true;
                }
                captured.bytes.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    captured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_cap_and_drains_the_rest() {
        let data = vec![b'x'; 300_000];
        let captured = read_capped(&data[..], 1000).await;
        assert_eq!(captured.bytes.len(), 1000);
        assert!(captured.truncated);
        assert!(captured.rendered().ends_with(TRUNCATED_MARKER));
        let small = read_capped(&b"hello"[..], 1000).await;
        assert_eq!(small.rendered(), "hello");
    }

    #[test]
    fn append_respects_the_cap() {
        let mut captured = Captured {
            bytes: b"abc".to_vec(),
            truncated: false,
        };
        captured.append("exit status 1", 8);
        assert_eq!(captured.bytes, b"abcexit ");
        assert!(captured.truncated);
    }
}
