//! Path templates (`/pets/{petId}`, `/files/{name}.json`): their syntax, and the values of
//! their parameters in a path. The routing trie (`routing::template`) matches them.

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `prefix{name}suffix`: the parameter takes the rest, at least one byte.
    Param {
        name: String,
        prefix: String,
        suffix: String,
    },
}

impl Segment {
    /// The parameter's value in `segment`, when it matches.
    pub fn capture<'s>(&self, segment: &'s [u8]) -> Option<&'s [u8]> {
        match self {
            Segment::Literal(l) => (l.as_bytes() == segment).then_some(&segment[..0]),
            Segment::Param { prefix, suffix, .. } => {
                let rest = segment.strip_prefix(prefix.as_bytes())?;
                let value = rest.strip_suffix(suffix.as_bytes())?;
                (!value.is_empty()).then_some(value)
            }
        }
    }
}

/// Split a template into segments; the error says what is wrong with it.
pub fn parse(template: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err("a path template starts with `/`".into());
    };
    let mut out = Vec::new();
    for seg in rest.split('/') {
        match (seg.find('{'), seg.rfind('}')) {
            (None, None) => out.push(Segment::Literal(seg.to_string())),
            (Some(open), Some(close)) if open < close => {
                let name = &seg[open + 1..close];
                let (prefix, suffix) = (&seg[..open], &seg[close + 1..]);
                if name.is_empty() || name.contains(['{', '}']) || suffix.contains(['{', '}']) {
                    return Err(format!(
                        "segment {seg:?}: one `{{name}}` per segment, with a name"
                    ));
                }
                out.push(Segment::Param {
                    name: name.to_string(),
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                });
            }
            _ => return Err(format!("segment {seg:?}: unbalanced `{{` or `}}`")),
        }
    }
    Ok(out)
}

/// Whether a template has any parameter (one without is an exact path).
pub fn has_params(segments: &[Segment]) -> bool {
    segments.iter().any(|s| matches!(s, Segment::Param { .. }))
}

/// The values of a matched template's parameters in `path`, by name. `None` when the path does
/// not match the template.
pub fn captures<'p, 's>(
    segments: &'s [Segment],
    path: &'p [u8],
) -> Option<Vec<(&'s str, &'p [u8])>> {
    let mut parts = path.strip_prefix(b"/")?.split(|&b| b == b'/');
    let mut out = Vec::new();
    for seg in segments {
        let part = parts.next()?;
        let value = seg.capture(part)?;
        if let Segment::Param { name, .. } = seg {
            out.push((name.as_str(), value));
        }
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_parse_errors() {
        let segs = parse("/users/{user}/files/{name}.json").unwrap();
        assert!(has_params(&segs));
        let got = captures(&segs, b"/users/ann/files/cv.json").unwrap();
        assert_eq!(got, [("user", &b"ann"[..]), ("name", &b"cv"[..])]);
        assert!(captures(&segs, b"/users/ann/files/cv.txt").is_none());
        assert!(captures(&segs, b"/users/ann/files/cv.json/x").is_none());
        assert!(!has_params(&parse("/a/b").unwrap()));
        assert!(parse("a/{b}").is_err());
        assert!(parse("/a/{}").is_err());
        assert!(parse("/a/{b}{c}").is_err());
        assert!(parse("/a/{b").is_err());
        assert!(parse("/a/b}").is_err());
    }
}
