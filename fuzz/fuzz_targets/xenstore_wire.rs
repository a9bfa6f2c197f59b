//! Everything mdguard reads from xenstore is untrusted: the wire decoder fed in
//! arbitrary pieces, every payload parser, and the schema's value parsers must
//! never panic, and a message that decodes must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdguard::report::admission::{Answer, Request};
use mdguard::report::schema::{parse_budget_kbps, parse_token, ArrayJson, Health};
use mdguard::xenstore::wire::{self, Decoder, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    // the first byte sets how the stream arrives: in pieces of 1..=256 bytes
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece) + 1;
    let mut d = Decoder::new();
    let mut at = 0;
    for chunk in stream.chunks(piece) {
        d.push(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    let whole = &stream[at..at + HEADER_LEN + m.payload.len()];
                    at += whole.len();
                    if let Ok(again) = wire::encode(m.ty, m.req_id, m.tx_id, &m.payload) {
                        assert_eq!(again, whole, "a decoded message encodes back");
                    }
                    let p = &m.payload;
                    let _ = wire::parse_watch_event(p);
                    let _ = wire::parse_directory_part(p);
                    let _ = wire::parse_perms(p);
                    let _ = wire::parse_error(p);
                    let _ = ArrayJson::parse(p);
                    let _ = Health::parse(p);
                    let _ = parse_budget_kbps(p);
                    let _ = parse_token(p);
                    // resync admission: a request parses back to its own bytes
                    if let Ok(r) = Request::parse(p) {
                        assert_eq!(Request::parse(&r.to_bytes()), Ok(r));
                    }
                    if let Ok(a) = Answer::parse(p) {
                        assert_eq!(a.to_bytes(), *p, "an answer encodes back");
                    }
                }
                Ok(None) => break,
                // out of sync: a real client drops the connection
                Err(_) => return,
            }
        }
    }
});
