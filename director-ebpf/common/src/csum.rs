//! Internet checksum arithmetic (RFC 1071, incremental per RFC 1624).
//!
//! Every value is a 16-bit word exactly as loaded from packet memory (no
//! byte swapping): one's-complement sums are byte-order independent as long
//! as all operands, the checksum included, are loaded the same way. XDP has
//! no `bpf_l3/l4_csum_replace`, so both the program and the tests use these.

/// Folds a 32/64-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// New checksum after one 16-bit word changed from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// New checksum after a 32-bit field (an IPv4 address) changed.
#[inline(always)]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = u64::from(!check)
        + u64::from(!(old as u16))
        + u64::from(!((old >> 16) as u16))
        + u64::from(new as u16)
        + u64::from((new >> 16) as u16);
    !fold(sum)
}

/// New checksum after a 128-bit field (an IPv6 address) changed.
#[inline(always)]
pub fn replace128(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let mut c = check;
    c = replace32(c, old[0], new[0]);
    c = replace32(c, old[1], new[1]);
    c = replace32(c, old[2], new[2]);
    replace32(c, old[3], new[3])
}

/// Checksum of a 20-byte IPv4 header given as ten words (checksum word zero).
#[inline(always)]
pub fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < 10 {
        sum += u64::from(words[i]);
        i += 1;
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full RFC 1071 checksum over bytes, as the reference.
    fn full(bytes: &[u8]) -> u16 {
        let mut sum = 0u64;
        for pair in bytes.chunks(2) {
            let w = [pair[0], *pair.get(1).unwrap_or(&0)];
            sum += u64::from(u16::from_ne_bytes(w));
        }
        !fold(sum)
    }

    fn word(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn dword(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn incremental_equals_full_recompute_for_address_and_port_changes() {
        // A 20-byte IPv4 header (RFC 1071 example-ish values), checksum at 10.
        let mut h: [u8; 20] = [
            0x45, 0, 0, 0x3c, 0x1c, 0x46, 0x40, 0, 0x40, 0x06, 0, 0, 0xac, 0x10, 0x0a, 0x63, 0xac,
            0x10, 0x0a, 0x0c,
        ];
        let c = full(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        assert_eq!(full(&h), 0, "a correct header sums to zero");

        let old = dword(&h, 16);
        let new_addr = [192u8, 168, 122, 10];
        h[16..20].copy_from_slice(&new_addr);
        let inc = replace32(word(&h, 10), old, dword(&h, 16));
        h[10..12].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(inc, full(&h));

        let old16 = word(&h, 2);
        h[2..4].copy_from_slice(&[0x05, 0xdc]);
        h[10..12].copy_from_slice(&inc.to_ne_bytes());
        let inc2 = replace16(inc, old16, word(&h, 2));
        h[10..12].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(inc2, full(&h));
    }

    #[test]
    fn ipv6_address_change_matches_full_recompute() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        data[20..22].copy_from_slice(&[0, 0]);
        let c = full(&data);
        let old = [dword(&data, 0), dword(&data, 4), dword(&data, 8), dword(&data, 12)];
        for (i, b) in data[0..16].iter_mut().enumerate() {
            *b = (255 - i * 3) as u8;
        }
        let new = [dword(&data, 0), dword(&data, 4), dword(&data, 8), dword(&data, 12)];
        assert_eq!(replace128(c, &old, &new), full(&data));
    }

    #[test]
    fn ipv4_header_matches_full() {
        let h: [u8; 20] =
            [0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x04, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let mut words = [0u16; 10];
        for (i, w) in words.iter_mut().enumerate() {
            *w = word(&h, i * 2);
        }
        assert_eq!(ipv4_header(&words), full(&h));
    }
}
