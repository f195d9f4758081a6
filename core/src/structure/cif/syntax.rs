//! CIF 1.1 syntax: data blocks, tag–value pairs and loops, with the line of every value.
//!
//! Accepts what real files contain: comments, single- and double-quoted values (a quote only
//! closes before whitespace, so `'O'Neil'` works), semicolon text fields, `?` and `.`, several
//! blocks per file, `save_` frames (skipped), and CRLF line ends.

use super::CifError;

/// One value and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub text: String,
    /// 1-based line number.
    pub line: usize,
    /// Quoted or text-field values are never `?`/`.` placeholders.
    pub quoted: bool,
}

impl Value {
    /// `?` (unknown) or `.` (not applicable).
    pub fn is_missing(&self) -> bool {
        !self.quoted && (self.text == "?" || self.text == ".")
    }
}

/// A `loop_`: column tags (lower case) and rows of values.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub tags: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub line: usize,
}

impl Loop {
    pub fn column(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| t == tag)
    }
}

/// One `data_` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Block {
    pub name: String,
    pub line: usize,
    /// Tag (lower case) → value, in file order.
    pub items: Vec<(String, Value)>,
    pub loops: Vec<Loop>,
}

impl Block {
    /// A single value for a tag, also found as a one-row loop.
    pub fn value(&self, tag: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, v)| v)
            .or_else(|| {
                self.loops.iter().find_map(|l| {
                    let c = l.column(tag)?;
                    (l.rows.len() == 1).then(|| &l.rows[0][c])
                })
            })
    }

    /// The loop holding a tag and its column.
    pub fn looped(&self, tag: &str) -> Option<(&Loop, usize)> {
        self.loops
            .iter()
            .find_map(|l| l.column(tag).map(|c| (l, c)))
    }

    /// Every value of a tag: a loop column, or a single value as a one-element list.
    pub fn values(&self, tag: &str) -> Option<Vec<&Value>> {
        if let Some((l, c)) = self.looped(tag) {
            return Some(l.rows.iter().map(|r| &r[c]).collect());
        }
        self.items
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, v)| vec![v])
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    DataBlock(String),
    Loop,
    Tag(String),
    Value(Value),
    /// `save_…`, `global_`, `stop_`: frames and reserved words this reader skips.
    Skip,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn at_line_start(&self) -> bool {
        self.pos == 0 || self.src.as_bytes()[self.pos - 1] == b'\n'
    }

    fn next_token(&mut self) -> Result<Option<(Token, usize)>, CifError> {
        let bytes = self.src.as_bytes();
        loop {
            // Whitespace and comments.
            while self.pos < bytes.len() && bytes[self.pos].is_ascii_whitespace() {
                if bytes[self.pos] == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            if self.pos >= bytes.len() {
                return Ok(None);
            }
            if bytes[self.pos] == b'#' {
                while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                    self.pos += 1;
                }
                continue;
            }
            break;
        }
        let line = self.line;
        let c = bytes[self.pos];
        if c == b';' && self.at_line_start() {
            return self.text_field(line).map(Some);
        }
        if c == b'\'' || c == b'"' {
            return self.quoted(c, line).map(Some);
        }
        let start = self.pos;
        while self.pos < bytes.len() && !bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        let lower = word.to_ascii_lowercase();
        let token = if lower.starts_with("data_") {
            Token::DataBlock(word[5..].to_string())
        } else if lower == "loop_" {
            Token::Loop
        } else if lower.starts_with("save_") || lower == "global_" || lower == "stop_" {
            Token::Skip
        } else if word.starts_with('_') {
            Token::Tag(lower)
        } else {
            Token::Value(Value {
                text: word.to_string(),
                line,
                quoted: false,
            })
        };
        Ok(Some((token, line)))
    }

    fn quoted(&mut self, quote: u8, line: usize) -> Result<(Token, usize), CifError> {
        let bytes = self.src.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        while i < bytes.len() {
            if bytes[i] == b'\n' || bytes[i] == b'\r' {
                break;
            }
            if bytes[i] == quote && (i + 1 == bytes.len() || bytes[i + 1].is_ascii_whitespace()) {
                self.pos = i + 1;
                return Ok(quoted_value(self.src[start..i].to_string(), line));
            }
            i += 1;
        }
        Err(CifError::syntax(
            line,
            format!("unterminated {} quote", quote as char),
        ))
    }

    fn text_field(&mut self, line: usize) -> Result<(Token, usize), CifError> {
        // Runs from after the opening ';' to the next line that starts with ';'.
        let bytes = self.src.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        while i < bytes.len() {
            if bytes[i] == b'\n' {
                self.line += 1;
                if i + 1 < bytes.len() && bytes[i + 1] == b';' {
                    let text = self.src[start..i].trim_end_matches('\r').trim().to_string();
                    self.pos = i + 2;
                    return Ok(quoted_value(text, line));
                }
            }
            i += 1;
        }
        Err(CifError::syntax(
            line,
            "text field opened with ';' is never closed".into(),
        ))
    }
}

fn quoted_value(text: String, line: usize) -> (Token, usize) {
    (
        Token::Value(Value {
            text,
            line,
            quoted: true,
        }),
        line,
    )
}

/// Parses CIF text into its data blocks.
pub fn parse(src: &str) -> Result<Vec<Block>, CifError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut lexer = Lexer {
        src,
        pos: 0,
        line: 1,
    };
    let mut blocks: Vec<Block> = Vec::new();
    let mut pending: Option<(Token, usize)> = None;
    let mut in_save_frame = false;
    loop {
        let next = match pending.take() {
            Some(t) => Some(t),
            None => lexer.next_token()?,
        };
        let Some((token, line)) = next else { break };
        if in_save_frame {
            // Save frames (dictionaries, rare in structure files) are skipped up to their `save_`.
            if token == Token::Skip {
                in_save_frame = false;
            }
            continue;
        }
        match token {
            Token::DataBlock(name) => blocks.push(Block {
                name,
                line,
                ..Block::default()
            }),
            Token::Skip => {
                in_save_frame = true;
            }
            Token::Tag(tag) => {
                current(&mut blocks, line)?;
                let Some((Token::Value(v), _)) = lexer.next_token()? else {
                    return Err(CifError::syntax(line, format!("tag {tag} has no value")));
                };
                current(&mut blocks, line)?.items.push((tag, v));
            }
            Token::Loop => {
                current(&mut blocks, line)?;
                let mut tags = Vec::new();
                let mut values = Vec::new();
                loop {
                    match lexer.next_token()? {
                        Some((Token::Tag(t), _)) if values.is_empty() => tags.push(t),
                        Some((Token::Value(v), _)) => values.push(v),
                        other => {
                            pending = other;
                            break;
                        }
                    }
                }
                if tags.is_empty() {
                    return Err(CifError::syntax(line, "loop_ without tags".into()));
                }
                if values.len() % tags.len() != 0 {
                    let last = values.last().map_or(line, |v| v.line);
                    return Err(CifError::syntax(
                        last,
                        format!(
                            "loop starting at line {line} has {} values for {} columns ({}), not a whole number of rows",
                            values.len(),
                            tags.len(),
                            tags.join(" ")
                        ),
                    ));
                }
                let rows = values.chunks(tags.len()).map(<[Value]>::to_vec).collect();
                current(&mut blocks, line)?
                    .loops
                    .push(Loop { tags, rows, line });
            }
            Token::Value(v) => {
                return Err(CifError::syntax(
                    v.line,
                    format!("value '{}' without a tag", v.text),
                ));
            }
        }
    }
    if blocks.is_empty() {
        return Err(CifError::syntax(1, "no data_ block: not a CIF file".into()));
    }
    Ok(blocks)
}

fn current(blocks: &mut [Block], line: usize) -> Result<&mut Block, CifError> {
    blocks
        .last_mut()
        .ok_or_else(|| CifError::syntax(line, "data item before the first data_ block".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_loops_quotes_and_text_fields() {
        let cif = "# comment\ndata_one\n_cell_length_a 5.4310(2)\n_title\n;\nmulti\nline\n;\n\
                   _name 'O'Neil s'\nloop_\n_a\n_b\n1 \"x y\"\n2 ?\ndata_two\n_x .\n";
        let blocks = parse(cif).unwrap();
        assert_eq!(blocks.len(), 2);
        let b = &blocks[0];
        assert_eq!(b.value("_cell_length_a").unwrap().text, "5.4310(2)");
        assert_eq!(b.value("_title").unwrap().text, "multi\nline");
        assert_eq!(b.value("_name").unwrap().text, "O'Neil s");
        let (l, c) = b.looped("_b").unwrap();
        assert_eq!(l.rows[0][c].text, "x y");
        assert!(l.rows[1][c].is_missing());
        assert_eq!(l.rows[1][c].line, 14);
        assert!(blocks[1].value("_x").unwrap().is_missing());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("data_a\nloop_\n_a\n_b\n1 2\n3\n").unwrap_err();
        assert_eq!(e.line(), 6);
        let e = parse("data_a\n_a 'open\n").unwrap_err();
        assert_eq!(e.line(), 2);
        let e = parse("data_a\n_t\n;\nnever closed\n").unwrap_err();
        assert_eq!(e.line(), 3);
        let e = parse("_a 1\n").unwrap_err();
        assert_eq!(e.line(), 1);
        assert!(parse("").is_err());
    }
}
