//! The v2 signature: sorted `key=value` pairs (empty values and `sign` skipped) joined
//! with `&`, then `&key=<API key>`; MD5 or HMAC-SHA256 (keyed with the API key),
//! upper-case hex.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Fields, SignType};

/// The signature of `fields` (any `sign` field is ignored).
pub fn sign(fields: &Fields, key: &str, sign_type: SignType) -> String {
    let signed = string_sign_temp(fields, key);
    match sign_type {
        SignType::Md5 => hex::encode_upper(Md5::digest(signed.as_bytes())),
        SignType::HmacSha256 => {
            // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(signed.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// Whether `fields["sign"]` is the signature of the other fields, compared in constant
/// time. A missing `sign` is never valid.
pub fn verify(fields: &Fields, key: &str, sign_type: SignType) -> bool {
    let Some(given) = fields.get("sign") else {
        return false;
    };
    let expected = sign(fields, key, sign_type);
    // Exact bytes only: WeChat sends upper-case hex, and a lower-cased or other-algorithm
    // sign is a different string. `ct_eq` on slices of unequal length is simply false.
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// WeChat's `stringSignTemp`: `stringA` (non-empty fields other than `sign`, in ASCII byte
/// order of their names, joined raw as `name=value` with `&`) followed by `&key=<key>`.
/// `Fields` is a `BTreeMap<String, _>`, whose order is exactly the byte order required.
/// Values are used as given: no trimming, no URL-encoding, `"0"` kept.
fn string_sign_temp(fields: &Fields, key: &str) -> String {
    let mut out = String::with_capacity(256);
    for (name, value) in fields {
        if name == "sign" || value.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out.push_str("&key=");
    out.push_str(key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn published_example() -> Fields {
        fields(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ])
    }

    fn signed(mut f: Fields, sign_type: SignType) -> Fields {
        let s = sign(&f, KEY, sign_type);
        f.insert("sign".into(), s);
        f
    }

    #[test]
    fn string_sign_temp_matches_the_published_example() {
        assert_eq!(
            string_sign_temp(&published_example(), KEY),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100\
             &nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
    }

    #[test]
    fn published_example_md5() {
        assert_eq!(
            sign(&published_example(), KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn published_example_hmac_sha256() {
        assert_eq!(
            sign(&published_example(), KEY, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn wechatpy_md5_vector() {
        let f = fields(&[("test1", "test1"), ("test2", "test2")]);
        assert_eq!(
            sign(&f, KEY, SignType::Md5),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
    }

    #[test]
    fn empty_values_and_the_sign_field_are_skipped() {
        let mut f = published_example();
        f.insert("attach".into(), String::new());
        f.insert("sign".into(), "WHATEVER".into());
        assert_eq!(
            string_sign_temp(&f, KEY),
            string_sign_temp(&published_example(), KEY)
        );
        assert_eq!(
            sign(&f, KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn sign_type_field_is_signed_when_present() {
        let mut f = published_example();
        f.insert("sign_type".into(), "HMAC-SHA256".into());
        assert!(string_sign_temp(&f, KEY).contains("&sign_type=HMAC-SHA256&key="));
        assert_ne!(
            sign(&f, KEY, SignType::HmacSha256),
            sign(&published_example(), KEY, SignType::HmacSha256)
        );
        f.insert("sign_type".into(), "MD5".into());
        assert_ne!(
            sign(&f, KEY, SignType::Md5),
            sign(&published_example(), KEY, SignType::Md5)
        );
    }

    #[test]
    fn zero_values_are_kept() {
        let f = fields(&[
            ("coupon_count", "0"),
            ("coupon_fee_0", "0"),
            ("total_fee", "1"),
        ]);
        assert_eq!(
            string_sign_temp(&f, "k"),
            "coupon_count=0&coupon_fee_0=0&total_fee=1&key=k"
        );
    }

    #[test]
    fn names_sort_in_ascii_byte_order() {
        let f = fields(&[
            ("ab", "3"),
            ("a_b", "2"),
            ("a1", "1"),
            ("a", "z"),
            ("_", "u"),
            ("Z", "up"),
        ]);
        assert_eq!(
            string_sign_temp(&f, "k"),
            "Z=up&_=u&a=z&a1=1&a_b=2&ab=3&key=k"
        );
    }

    #[test]
    fn values_are_raw_utf8_without_encoding_or_trimming() {
        let f = fields(&[
            ("body", "畅购商城-订单"),
            ("attach", " a&b=c d "),
            ("notify_url", "https://example.com/notify?x=1"),
        ]);
        let temp = string_sign_temp(&f, "k");
        assert_eq!(
            temp,
            "attach= a&b=c d &body=畅购商城-订单&notify_url=https://example.com/notify?x=1&key=k"
        );
        assert_eq!(
            sign(&f, "k", SignType::Md5),
            hex::encode_upper(Md5::digest(temp.as_bytes()))
        );
    }

    #[test]
    fn signature_formats() {
        let md5 = sign(&published_example(), KEY, SignType::Md5);
        let hmac = sign(&published_example(), KEY, SignType::HmacSha256);
        assert_eq!(md5.len(), 32);
        assert_eq!(hmac.len(), 64);
        for s in [md5, hmac] {
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn verify_accepts_a_correct_signature() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            let f = signed(published_example(), t);
            assert!(verify(&f, KEY, t));
        }
        let mut f = published_example();
        f.insert("sign".into(), "9A0A8659F005D6984697E2CA0A9CF3B7".into());
        assert!(verify(&f, KEY, SignType::Md5));
    }

    #[test]
    fn verify_rejects_a_tampered_value() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            let mut f = signed(published_example(), t);
            f.insert("body".into(), "test2".into());
            assert!(!verify(&f, KEY, t));
            let mut f = signed(published_example(), t);
            f.insert("total_fee".into(), "1".into());
            assert!(!verify(&f, KEY, t));
        }
    }

    #[test]
    fn verify_rejects_the_wrong_key() {
        let f = signed(published_example(), SignType::Md5);
        assert!(!verify(
            &f,
            "00000000000000000000000000000000",
            SignType::Md5
        ));
    }

    #[test]
    fn verify_rejects_a_lower_cased_sign() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            let mut f = signed(published_example(), t);
            let lower = f["sign"].to_ascii_lowercase();
            f.insert("sign".into(), lower);
            assert!(!verify(&f, KEY, t));
        }
    }

    #[test]
    fn verify_rejects_a_sign_of_the_other_algorithm() {
        let f = signed(published_example(), SignType::Md5);
        assert!(!verify(&f, KEY, SignType::HmacSha256));
        let f = signed(published_example(), SignType::HmacSha256);
        assert!(!verify(&f, KEY, SignType::Md5));
    }

    #[test]
    fn verify_rejects_a_missing_or_empty_sign() {
        assert!(!verify(&published_example(), KEY, SignType::Md5));
        let mut f = published_example();
        f.insert("sign".into(), String::new());
        assert!(!verify(&f, KEY, SignType::Md5));
    }
}
