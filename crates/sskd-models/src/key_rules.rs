//! One table per family of how its PyTorch state-dict keys and its Burn parameter paths name
//! the same tensor, read in both directions (as burn-store's `KeyRemapper` reads its patterns).
//!
//! A rule pairs a run of dot-separated segments of a PyTorch key with the segments of the Burn
//! path: `("layer{a+1}", "layers.{a}")` renames ResNet's 1-based stages, `("{3b+1}", "{b}.bn")`
//! names the batch norm at position `3b + 1` of a `Sequential` of conv, BN and ReLU triples.
//! A segment is literal text around at most one number pattern `{[k]v[+c]}` (`v` a letter
//! bound across the rule's two sides; the number written is `k·v + c`). A pattern starting
//! with `^` matches only at the start of the key. Segments no rule matches are kept as they
//! are; a rule whose Burn side is [`NOT_A_KEY`] says that segments of that shape no earlier
//! rule took name no parameter of the family (`layer0` of a ResNet, position `3b + 2`, a
//! ReLU, of a VGG block).
//!
//! A family may have several spellings (ResNet's `downsample`/`fc` of `resnet.py` and
//! torchvision, `shortcut`/`linear` of `resnetv2.py`): a file's key may use any of them; a
//! Burn path is named in each, the first the most common.

use std::collections::BTreeMap;

/// The Burn side of a rule refusing the PyTorch keys it matches.
pub const NOT_A_KEY: &str = "!";

/// One spelling of a family's keys: `(PyTorch pattern, Burn pattern)` pairs, tried in order.
pub type KeySpelling = &'static [(&'static str, &'static str)];

/// The key rules of a family (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct KeyRules {
    /// Rules of every spelling.
    pub common: KeySpelling,
    /// What tells the family's spellings apart, the most common first; none when there is one.
    pub spellings: &'static [KeySpelling],
}

impl KeyRules {
    /// Keys and paths that already agree.
    pub const SAME: KeyRules = KeyRules::one(&[]);

    /// A family of one spelling.
    pub const fn one(rules: KeySpelling) -> Self {
        Self {
            common: rules,
            spellings: &[],
        }
    }

    /// The spellings' own rules (one empty one when there is a single spelling).
    fn own_rules(&self) -> &'static [KeySpelling] {
        match self.spellings {
            [] => &[&[]],
            spellings => spellings,
        }
    }

    /// The Burn path (PyTorch leaf names) of the PyTorch key `torch_key`, in any spelling;
    /// `None` for a key a rule refuses.
    pub fn burn_path(&self, torch_key: &str) -> Option<String> {
        let rules = self
            .own_rules()
            .iter()
            .flat_map(|spelling| spelling.iter())
            .chain(self.common)
            .copied();
        rewrite(torch_key, rules)
    }

    /// Every PyTorch key naming the parameter at `burn_path`, one per spelling (the most common
    /// first, repeats removed).
    pub fn torch_keys(&self, burn_path: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for spelling in self.own_rules() {
            let rules = spelling.iter().chain(self.common);
            let rules = rules.filter(|(_, burn)| *burn != NOT_A_KEY);
            let key = rewrite(burn_path, rules.map(|&(torch, burn)| (burn, torch)))
                .unwrap_or_else(|| burn_path.to_string());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }
}

/// `key` with every run of segments matching a rule's `from` side written as its `to` side;
/// `None` where that side is [`NOT_A_KEY`].
fn rewrite<'r>(
    key: &str,
    rules: impl Iterator<Item = (&'r str, &'r str)> + Clone,
) -> Option<String> {
    let segments: Vec<&str> = key.split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    let mut position = 0;
    while position < segments.len() {
        let matched = rules.clone().find_map(|(from, to)| {
            // A rule anchored on either side is anchored both ways.
            let anchored = from.starts_with('^') || to.starts_with('^');
            if anchored && position > 0 {
                return None;
            }
            let (from, to) = (from.trim_start_matches('^'), to.trim_start_matches('^'));
            let pattern: Vec<&str> = from.split('.').collect();
            let window = segments.get(position..position + pattern.len())?;
            let bound = bind(&pattern, window)?;
            Some((pattern.len(), (to != NOT_A_KEY).then(|| fill(to, &bound))))
        });
        match matched {
            Some((_, None)) => return None,
            Some((consumed, Some(written))) => {
                out.extend(written);
                position += consumed;
            }
            None => {
                out.push(segments[position].to_string());
                position += 1;
            }
        }
    }
    Some(out.join("."))
}

/// A segment pattern: literal text, or text around one number `k·v + c`.
struct Segment<'p> {
    prefix: &'p str,
    number: Option<Number>,
    suffix: &'p str,
}

/// `k·v + c`.
struct Number {
    variable: char,
    scale: usize,
    offset: usize,
}

impl<'p> Segment<'p> {
    fn parse(pattern: &'p str) -> Self {
        let Some((prefix, rest)) = pattern.split_once('{') else {
            return Self {
                prefix: pattern,
                number: None,
                suffix: "",
            };
        };
        let (expression, suffix) = rest.split_once('}').expect("a rule's `{` is closed");
        let (term, offset) = match expression.split_once('+') {
            Some((term, offset)) => (term, offset.parse().expect("a rule's offset is a number")),
            None => (expression, 0),
        };
        let variable = term
            .chars()
            .last()
            .expect("a rule's number names a variable");
        let scale = term[..term.len() - variable.len_utf8()]
            .parse()
            .unwrap_or(1);
        Self {
            prefix,
            number: Some(Number {
                variable,
                scale,
                offset,
            }),
            suffix,
        }
    }
}

/// The variables `pattern` binds matching `window` segment by segment, or `None`.
fn bind(pattern: &[&str], window: &[&str]) -> Option<BTreeMap<char, usize>> {
    let mut bound = BTreeMap::new();
    for (pattern, text) in pattern.iter().zip(window) {
        let segment = Segment::parse(pattern);
        let middle = text
            .strip_prefix(segment.prefix)?
            .strip_suffix(segment.suffix)?;
        let Some(number) = segment.number else {
            if !middle.is_empty() {
                return None;
            }
            continue;
        };
        if middle.is_empty() || !middle.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let written: usize = middle.parse().ok()?;
        let shifted = written.checked_sub(number.offset)?;
        if shifted % number.scale != 0 {
            return None;
        }
        let value = shifted / number.scale;
        if *bound.entry(number.variable).or_insert(value) != value {
            return None;
        }
    }
    Some(bound)
}

/// The segments of `pattern` with its numbers computed from `bound`.
fn fill(pattern: &str, bound: &BTreeMap<char, usize>) -> Vec<String> {
    pattern
        .split('.')
        .map(|segment| {
            let segment = Segment::parse(segment);
            match segment.number {
                None => segment.prefix.to_string(),
                Some(number) => {
                    let value = bound[&number.variable] * number.scale + number.offset;
                    format!("{}{value}{}", segment.prefix, segment.suffix)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIPLES: KeyRules = KeyRules::one(&[
        ("block{a}.{3b}", "block{a}.{b}.conv"),
        ("block{a}.{3b+1}", "block{a}.{b}.bn"),
        ("block{a}.{b}", NOT_A_KEY),
    ]);

    const TWO_SPELLINGS: KeyRules = KeyRules {
        common: &[("layer{a+1}", "layers.{a}"), ("layer{a}", NOT_A_KEY)],
        spellings: &[
            &[("downsample.0", "downsample.conv")],
            &[("shortcut.0", "downsample.conv"), ("^linear", "fc")],
        ],
    };

    #[test]
    fn numbers_scale_and_shift_both_ways() {
        let burn_path = |key| TRIPLES.burn_path(key);
        assert_eq!(burn_path("block2.4.weight").unwrap(), "block2.1.bn.weight");
        assert_eq!(burn_path("block2.3.bias").unwrap(), "block2.1.conv.bias");
        // Position 3b + 2 (the ReLU) has no parameters.
        assert_eq!(burn_path("block2.5.weight"), None);
        assert_eq!(burn_path("classifier.weight").unwrap(), "classifier.weight");
        assert_eq!(
            TRIPLES.torch_keys("block0.2.bn.running_var"),
            ["block0.7.running_var"]
        );
    }

    #[test]
    fn every_spelling_reads_and_each_is_written() {
        let rules = TWO_SPELLINGS;
        let burn_path = |key| rules.burn_path(key).unwrap();
        assert_eq!(
            burn_path("layer3.0.shortcut.0.weight"),
            "layers.2.0.downsample.conv.weight"
        );
        assert_eq!(
            burn_path("layer1.1.downsample.0.weight"),
            "layers.0.1.downsample.conv.weight"
        );
        assert_eq!(burn_path("linear.bias"), "fc.bias");
        // `^` anchors at the start; `layer0` is no 1-based stage.
        assert_eq!(burn_path("x.linear.bias"), "x.linear.bias");
        assert_eq!(rules.burn_path("layer0.conv1.weight"), None);
        assert_eq!(
            rules.torch_keys("layers.1.0.downsample.conv.weight"),
            ["layer2.0.downsample.0.weight", "layer2.0.shortcut.0.weight"]
        );
        assert_eq!(
            rules.torch_keys("fc.weight"),
            ["fc.weight", "linear.weight"]
        );
        assert_eq!(rules.torch_keys("conv1.weight"), ["conv1.weight"]);
        assert_eq!(KeyRules::SAME.torch_keys("a.b"), ["a.b"]);
    }
}
