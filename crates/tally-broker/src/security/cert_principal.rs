//! The principal of a TLS client certificate, as Kafka's default principal builder makes it:
//! `User:` and the certificate's subject as an RFC 2253 distinguished name (the relative
//! names in reverse order of the certificate's, `CN=alice,OU=eng,O=acme,C=US`). A small DER
//! reader that walks to the subject and nothing else; anything it cannot read is `None`, and
//! the connection stays `User:ANONYMOUS`.

/// `User:<subject>` of a DER certificate.
pub fn principal_of(certificate: &[u8]) -> Option<String> {
    subject_dn(certificate).map(|dn| format!("User:{dn}"))
}

/// One DER element: (tag, content, the rest after it).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

fn subject_dn(certificate: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, when present.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity; then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = element(rest)? else {
        return None;
    };
    let mut names = Vec::new();
    while !rdns.is_empty() {
        let (SET, mut set, after) = element(rdns)? else {
            return None;
        };
        rdns = after;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, pair, after) = element(set)? else {
                return None;
            };
            set = after;
            let (0x06, oid, value) = element(pair)? else {
                return None;
            };
            let (_, text, _) = element(value)?;
            let text = std::str::from_utf8(text).ok()?;
            parts.push(format!("{}={}", attribute_name(oid), escape(text)));
        }
        names.push(parts.join("+"));
    }
    names.reverse();
    Some(names.join(","))
}

/// RFC 2253's short names, else the dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < 8 {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        }
    }
    parts.join(".")
}

/// RFC 2253 escaping: `,+"\<>;` anywhere, `#` or a space first, a space last.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_reads_as_kafka_prints_it() {
        use rcgen::DnType::*;
        let der = certificate(&[
            (CountryName, "US"),
            (OrganizationName, "Acme, Inc."),
            (OrganizationalUnitName, "eng"),
            (CommonName, "alice"),
        ]);
        assert_eq!(
            principal_of(&der).as_deref(),
            Some("User:CN=alice,OU=eng,O=Acme\\, Inc.,C=US")
        );
        let der = certificate(&[(CommonName, "#bob ")]);
        assert_eq!(principal_of(&der).as_deref(), Some("User:CN=\\#bob\\ "));
    }

    #[test]
    fn anything_else_is_none_not_a_panic() {
        let der = certificate(&[(rcgen::DnType::CommonName, "alice")]);
        for cut in 0..der.len() {
            let _ = principal_of(&der[..cut]);
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x55;
            let _ = principal_of(&flipped);
            flipped[i] ^= 0x55;
        }
        assert_eq!(principal_of(&[]), None);
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
