//! A bounds-checked reader over untrusted bytes: every read checks the length first
//! and fails with [`ParseError::Truncated`] instead of indexing past the end.

use super::ParseError;

/// A bounds-checked reader over untrusted bytes.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.data.len() < n {
            return Err(ParseError::Truncated {
                what: self.what,
                need: n,
                have: self.data.len(),
            });
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, ParseError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
