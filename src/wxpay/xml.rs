//! WeChat's flat `<xml>` documents: strict parsing and serialisation as WeChat writes them.

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

use super::Fields;

/// Largest document accepted, in bytes.
pub const MAX_XML_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML document larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    #[error("the root element must be <xml>")]
    WrongRoot,
    #[error("field `{0}` appears twice")]
    Duplicate(String),
    #[error("field `{0}` has nested elements")]
    Nested(String),
    #[error("DOCTYPE and entity declarations are not accepted")]
    Doctype,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Parses `<xml><name>value</name>...</xml>` (values plain or CDATA) into fields.
///
/// The event reader is used rather than serde because a serde map silently keeps the last
/// of two equal fields, and a signed value must be the value we act on. Values are taken
/// exactly as written (no trimming, no line-end normalisation) because they are signed byte
/// for byte; only the five predefined entities and character references are resolved.
pub fn parse(body: &str) -> Result<Fields, XmlError> {
    if body.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let mut reader = Reader::from_str(body);
    // The defaults already hold what strictness needs (end names checked, no dangling `&`,
    // no trimming); set them anyway so a future default change cannot loosen this parser.
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut fields = Fields::new();
    let mut state = State::Prolog { first: true };
    loop {
        let event = reader.read_event().map_err(|e| {
            XmlError::Malformed(format!("{e} (at byte {})", reader.error_position()))
        })?;
        state = match (state, event) {
            (_, Event::DocType(_)) => return Err(XmlError::Doctype),
            (_, Event::PI(_)) => return Err(malformed(&reader, "processing instruction")),
            (State::Prolog { first: true }, Event::Decl(_)) => State::Prolog { first: false },
            (_, Event::Decl(_)) => return Err(malformed(&reader, "misplaced XML declaration")),

            (State::Prolog { .. }, Event::Start(e)) => {
                check_root(&reader, &e)?;
                State::Root
            }
            (State::Prolog { .. }, Event::Empty(e)) => {
                check_root(&reader, &e)?;
                State::Done
            }
            (State::Prolog { .. }, Event::Comment(_)) => State::Prolog { first: false },
            (State::Prolog { .. }, Event::Eof) => {
                return Err(malformed(&reader, "no root element"));
            }

            (State::Root, Event::Start(e)) => State::Field {
                name: field_name(&reader, &e, &fields)?,
                value: String::new(),
            },
            (State::Root, Event::Empty(e)) => {
                let name = field_name(&reader, &e, &fields)?;
                fields.insert(name, String::new());
                State::Root
            }
            (State::Root, Event::End(_)) => State::Done,
            (State::Root, Event::Comment(_)) => State::Root,
            (State::Root, Event::CData(_) | Event::GeneralRef(_)) => {
                return Err(malformed(&reader, "text outside a field"));
            }
            (State::Root, Event::Eof) => return Err(malformed(&reader, "unclosed <xml>")),

            (State::Field { name, mut value }, Event::Text(t)) => {
                // Raw source text: the reader yields references as separate events, so
                // this slice holds no `&` and needs no unescaping.
                if t.contains("]]>") {
                    return Err(malformed(&reader, "`]]>` in text"));
                }
                value.push_str(&t.into_inner());
                State::Field { name, value }
            }
            (State::Field { name, mut value }, Event::CData(c)) => {
                value.push_str(&c.into_inner());
                State::Field { name, value }
            }
            (State::Field { name, mut value }, Event::GeneralRef(r)) => {
                value.push(resolve_reference(&reader, &r)?);
                State::Field { name, value }
            }
            (state @ State::Field { .. }, Event::Comment(_)) => state,
            (State::Field { name, .. }, Event::Start(e) | Event::Empty(e)) => {
                check_name(&reader, &e)?;
                return Err(XmlError::Nested(name));
            }
            (State::Field { name, value }, Event::End(_)) => {
                // `check_end_names` has already matched `</name>` to `<name>`.
                fields.insert(name, value);
                State::Root
            }
            (State::Field { name, .. }, Event::Eof) => {
                return Err(malformed(&reader, &format!("unclosed <{name}>")));
            }

            (State::Done, Event::Eof) => return Ok(fields),
            (State::Done, Event::Text(t)) if is_xml_whitespace(&t) => State::Done,
            (State::Done, _) => return Err(malformed(&reader, "content after </xml>")),

            // Whitespace is allowed around the root and between fields, nothing else.
            (State::Prolog { .. }, Event::Text(t)) if is_xml_whitespace(&t) => {
                State::Prolog { first: false }
            }
            (State::Root, Event::Text(t)) if is_xml_whitespace(&t) => State::Root,
            (State::Prolog { .. } | State::Root, Event::Text(_)) => {
                return Err(malformed(&reader, "text outside a field"));
            }
            (State::Prolog { .. }, Event::CData(_) | Event::GeneralRef(_)) => {
                return Err(malformed(&reader, "text before <xml>"));
            }
            (State::Prolog { .. }, Event::End(_)) => {
                return Err(malformed(&reader, "end tag before <xml>"));
            }
        };
    }
}

/// Where `parse` is in the document.
enum State {
    /// Before the root element; `first` until any event has been read: an XML declaration
    /// is only allowed as the very first thing in the document.
    Prolog { first: bool },
    /// Inside `<xml>`, between fields.
    Root,
    /// Inside a field, collecting its text, CDATA and references.
    Field { name: String, value: String },
    /// After `</xml>`: only whitespace may follow.
    Done,
}

/// A rejection by this parser (not by the reader), located at the end of the event read.
fn malformed(reader: &Reader<&[u8]>, what: &str) -> XmlError {
    XmlError::Malformed(format!("{what} (before byte {})", reader.buffer_position()))
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Attributes carry nothing in WeChat's format; accepting them would let data hide in a
/// signed document without being signed.
fn reject_attributes(reader: &Reader<&[u8]>, e: &BytesStart<'_>) -> Result<(), XmlError> {
    if is_xml_whitespace(e.attributes_raw()) {
        Ok(())
    } else {
        Err(malformed(
            reader,
            &format!("attributes on <{}>", e.name().as_ref()),
        ))
    }
}

/// quick-xml reads `<<a>` or `<a<b>` as a start tag whose name contains `<`. Names are
/// limited to ASCII letters, digits, `_`, `:`, `-`, `.` and non-ASCII characters. This is
/// looser than XML's `Name` (a leading digit is allowed) so that every field name our
/// own `to_xml` may write, such as `coupon_fee_0` or `0`, reads back.
fn check_name(reader: &Reader<&[u8]>, e: &BytesStart<'_>) -> Result<(), XmlError> {
    let name = e.name();
    let name: &str = name.as_ref();
    let valid = !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.') || !c.is_ascii()
        });
    if valid {
        Ok(())
    } else {
        Err(malformed(reader, &format!("invalid element name {name:?}")))
    }
}

fn check_root(reader: &Reader<&[u8]>, e: &BytesStart<'_>) -> Result<(), XmlError> {
    check_name(reader, e)?;
    if e.name().as_ref() != "xml" {
        return Err(XmlError::WrongRoot);
    }
    reject_attributes(reader, e)
}

fn field_name(
    reader: &Reader<&[u8]>,
    e: &BytesStart<'_>,
    fields: &Fields,
) -> Result<String, XmlError> {
    check_name(reader, e)?;
    reject_attributes(reader, e)?;
    let name = e.name().as_ref().to_owned();
    if fields.contains_key(&name) {
        return Err(XmlError::Duplicate(name));
    }
    Ok(name)
}

/// `&lt;` `&gt;` `&amp;` `&apos;` `&quot;` and `&#NN;`/`&#xHH;`; any other entity is an
/// error (there is no DTD to define one, and none would be expanded anyway).
fn resolve_reference(reader: &Reader<&[u8]>, r: &BytesRef<'_>) -> Result<char, XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            Ok(None) | Err(_) => Err(malformed(
                reader,
                &format!("invalid character reference &{};", r.as_ref()),
            )),
        };
    }
    match r.as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(malformed(reader, &format!("undefined entity &{other};"))),
    }
}

/// Serialises fields as WeChat does: `<xml>`, one element per field in name order, values
/// in CDATA (a `]]>` inside a value is split safely), all-digit values bare.
pub fn to_xml(fields: &Fields) -> String {
    let mut out = String::with_capacity(
        16 + fields
            .iter()
            .map(|(k, v)| 2 * k.len() + v.len() + 17)
            .sum::<usize>(),
    );
    out.push_str("<xml>");
    for (name, value) in fields {
        out.push('<');
        out.push_str(name);
        out.push('>');
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(value);
        } else {
            out.push_str("<![CDATA[");
            // A CDATA section cannot contain `]]>`: end it after `]]` and start a new one
            // before `>`; a parser concatenates adjacent sections.
            out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn is_malformed(r: Result<Fields, XmlError>) -> bool {
        matches!(r, Err(XmlError::Malformed(_)))
    }

    /// The shape of a real payment notification: sorted, one element per line, CDATA
    /// values, bare fees, `coupon_*_0` fields.
    const NOTIFICATION: &str = "<xml>
  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>
  <attach><![CDATA[支付测试]]></attach>
  <bank_type><![CDATA[CFT]]></bank_type>
  <cash_fee>1</cash_fee>
  <coupon_count>1</coupon_count>
  <coupon_fee>10</coupon_fee>
  <coupon_fee_0><![CDATA[10]]></coupon_fee_0>
  <coupon_id_0><![CDATA[10000]]></coupon_id_0>
  <fee_type><![CDATA[CNY]]></fee_type>
  <is_subscribe><![CDATA[Y]]></is_subscribe>
  <mch_id><![CDATA[10000100]]></mch_id>
  <nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>
  <openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>
  <out_trade_no><![CDATA[1409811653]]></out_trade_no>
  <result_code><![CDATA[SUCCESS]]></result_code>
  <return_code><![CDATA[SUCCESS]]></return_code>
  <sign><![CDATA[B552ED6B279343CB493C5DD0D78AB241]]></sign>
  <time_end><![CDATA[20140903131540]]></time_end>
  <total_fee>11</total_fee>
  <trade_type><![CDATA[NATIVE]]></trade_type>
  <transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id>
</xml>
";

    #[test]
    fn a_real_notification_parses() {
        let f = parse(NOTIFICATION).unwrap();
        assert_eq!(f.len(), 21);
        assert_eq!(f["appid"], "wx2421b1c4370ec43b");
        assert_eq!(f["attach"], "支付测试");
        assert_eq!(f["total_fee"], "11");
        assert_eq!(f["cash_fee"], "1");
        assert_eq!(f["coupon_fee_0"], "10");
        assert_eq!(f["sign"], "B552ED6B279343CB493C5DD0D78AB241");
        assert_eq!(f["transaction_id"], "1004400740201409030005092168");
    }

    #[test]
    fn a_declaration_and_comments_are_allowed_around_fields() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hi -->\n\
                    <xml><!-- c --><a>1</a>\r\n\t<b>x<!-- c -->y</b></xml>\n";
        assert_eq!(parse(body).unwrap(), fields(&[("a", "1"), ("b", "xy")]));
    }

    #[test]
    fn plain_text_cdata_and_their_mix_concatenate() {
        let body = "<xml><a>a &amp; b &lt;c&gt; &quot;&apos;</a>\
                    <b><![CDATA[x<y&z]]></b>\
                    <c>pre<![CDATA[ <mid> ]]>post&amp;<![CDATA[]]]]><![CDATA[>]]></c>\
                    <d>&#20013;&#x6587;</d></xml>";
        assert_eq!(
            parse(body).unwrap(),
            fields(&[
                ("a", "a & b <c> \"'"),
                ("b", "x<y&z"),
                ("c", "pre <mid> post&]]>"),
                ("d", "中文"),
            ])
        );
    }

    #[test]
    fn empty_elements_are_empty_strings() {
        let body = "<xml><a/><b></b><c><![CDATA[]]></c><d /></xml>";
        assert_eq!(
            parse(body).unwrap(),
            fields(&[("a", ""), ("b", ""), ("c", ""), ("d", "")])
        );
        assert_eq!(parse("<xml/>").unwrap(), Fields::new());
        assert_eq!(parse("<xml></xml>").unwrap(), Fields::new());
    }

    #[test]
    fn whitespace_inside_values_is_preserved_exactly() {
        let body = "<xml><a>  two  spaces </a><b>\r\n\tx\r\n</b><c> <![CDATA[ y ]]> </c>\
                    <d>   </d></xml>";
        assert_eq!(
            parse(body).unwrap(),
            fields(&[
                ("a", "  two  spaces "),
                ("b", "\r\n\tx\r\n"),
                ("c", "  y  "),
                ("d", "   "),
            ])
        );
    }

    #[test]
    fn oversized_bodies_are_rejected_before_parsing() {
        let filler = "x".repeat(MAX_XML_BYTES);
        let body = format!("<xml><a>{filler}</a></xml>");
        assert_eq!(parse(&body), Err(XmlError::TooLarge));
        let at_limit = format!("<xml><a>{}</a></xml>", &filler[..MAX_XML_BYTES - 18]);
        assert_eq!(at_limit.len(), MAX_XML_BYTES);
        assert!(parse(&at_limit).is_ok());
    }

    #[test]
    fn doctypes_are_rejected() {
        for body in [
            "<!DOCTYPE xml><xml><a>1</a></xml>",
            "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x \"boom\">]><xml><a>&x;</a></xml>",
            "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>",
            "<!doctype xml><xml/>",
        ] {
            assert_eq!(parse(body), Err(XmlError::Doctype), "{body}");
        }
        // Inside the document a DOCTYPE is at best malformed; never accepted.
        assert!(parse("<xml><!DOCTYPE xml><a>1</a></xml>").is_err());
    }

    #[test]
    fn undefined_entities_are_not_expanded() {
        assert!(is_malformed(parse("<xml><a>&x;</a></xml>")));
        assert!(is_malformed(parse("<xml><a>&nbsp;</a></xml>")));
        assert!(is_malformed(parse("<xml><a>a & b</a></xml>")));
        assert!(is_malformed(parse("<xml><a>&#0;</a></xml>")));
        assert!(is_malformed(parse("<xml><a>&#xZZ;</a></xml>")));
    }

    #[test]
    fn the_root_must_be_xml() {
        assert_eq!(parse("<root><a>1</a></root>"), Err(XmlError::WrongRoot));
        assert_eq!(parse("<XML><a>1</a></XML>"), Err(XmlError::WrongRoot));
        assert_eq!(parse("<a/>"), Err(XmlError::WrongRoot));
    }

    #[test]
    fn a_repeated_field_is_rejected() {
        assert_eq!(
            parse("<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>"),
            Err(XmlError::Duplicate("total_fee".into()))
        );
        assert_eq!(
            parse("<xml><a/><a>1</a></xml>"),
            Err(XmlError::Duplicate("a".into()))
        );
        assert_eq!(
            parse("<xml><a>1</a><a/></xml>"),
            Err(XmlError::Duplicate("a".into()))
        );
    }

    #[test]
    fn a_field_with_children_is_rejected() {
        assert_eq!(
            parse("<xml><a><b>1</b></a></xml>"),
            Err(XmlError::Nested("a".into()))
        );
        assert_eq!(
            parse("<xml><a>x<b/></a></xml>"),
            Err(XmlError::Nested("a".into()))
        );
    }

    #[test]
    fn text_outside_fields_is_rejected() {
        assert!(is_malformed(parse("<xml>stray<a>1</a></xml>")));
        assert!(is_malformed(parse("<xml><a>1</a>stray</xml>")));
        assert!(is_malformed(parse("<xml><a>1</a><![CDATA[x]]></xml>")));
        assert!(is_malformed(parse("<xml><a>1</a>&amp;</xml>")));
        assert!(is_malformed(parse("before<xml><a>1</a></xml>")));
    }

    #[test]
    fn content_after_the_root_is_rejected() {
        assert!(parse("<xml><a>1</a></xml>\r\n  \n").is_ok());
        assert!(is_malformed(parse("<xml><a>1</a></xml>x")));
        assert!(is_malformed(parse("<xml><a>1</a></xml><xml/>")));
        assert!(is_malformed(parse("<xml><a>1</a></xml><b>2</b>")));
        assert!(is_malformed(parse("<xml><a>1</a></xml><!-- c -->")));
    }

    #[test]
    fn malformed_documents_are_rejected() {
        for body in [
            "",
            "   ",
            "<xml>",
            "<xml><a>1</a>",
            "<xml><a>1</xml>",
            "<xml><a>1</b></xml>",
            "<xml><a>1</a></xml></xml>",
            "<xml><a><![CDATA[1</a></xml>",
            "<xml><a x=\"1\">1</a></xml>",
            "<xml id=\"1\"><a>1</a></xml>",
            "<xml><?pi x?><a>1</a></xml>",
            "<xml><a>1</a><?xml version=\"1.0\"?></xml>",
            " <?xml version=\"1.0\"?><xml/>",
            "<!-- c --><?xml version=\"1.0\"?><xml/>",
            "<?xml version=\"1.0\"?><?xml version=\"1.0\"?><xml/>",
            "<xml><a>1<</a></xml>",
            "<xml><a>x]]>y</a></xml>",
            "<xml><a<b>1</a<b></xml>",
            "<xml><a>1<<b/></a></xml>",
            "<<xml/>",
            "</a><xml/>",
        ] {
            assert!(is_malformed(parse(body)), "{body:?} gave {:?}", parse(body));
        }
    }

    #[test]
    fn to_xml_writes_wechat_style() {
        let f = fields(&[
            ("total_fee", "101"),
            ("body", "畅购商城-订单"),
            ("attach", ""),
            ("x", "a]]>b"),
            ("n", "-1"),
        ]);
        assert_eq!(
            to_xml(&f),
            "<xml><attach><![CDATA[]]></attach><body><![CDATA[畅购商城-订单]]></body>\
             <n><![CDATA[-1]]></n><total_fee>101</total_fee>\
             <x><![CDATA[a]]]]><![CDATA[>b]]></x></xml>"
        );
        assert_eq!(to_xml(&Fields::new()), "<xml></xml>");
    }

    #[test]
    fn to_xml_output_parses_back() {
        let f = parse(NOTIFICATION).unwrap();
        assert_eq!(parse(&to_xml(&f)).unwrap(), f);
    }

    proptest! {
        #[test]
        fn parse_inverts_to_xml(
            m in prop::collection::btree_map(
                "[a-z_0-9]{1,20}",
                prop_oneof![
                    Just(String::new()),
                    "[0-9]{1,12}",
                    "(\\]\\]>|\\]|>|<|&|&amp;|<!\\[CDATA\\[|\\]\\]|[ \t\r\n]|[a-zA-Z0-9]|畅购|支付)*",
                    any::<String>(),
                ],
                0..12,
            )
        ) {
            let xml = to_xml(&m);
            prop_assert_eq!(parse(&xml), Ok(m));
        }
    }
}
