//! CIF syntax: data blocks, tag–value pairs and loops, with the line of every value.
//!
//! CIF 1.1 and 2.0 as real files write them: comments, single- and double-quoted values (in
//! CIF 1.1 a quote only closes before whitespace, so `'O'Neil'` works), triple-quoted values
//! (CIF 2.0), semicolon text fields, `?` and `.`, several blocks per file, `save_` frames
//! (skipped), CRLF or CR line ends, tabs and a trailing Ctrl-Z. Legacy forms that pymatgen
//! tolerates are read too, each with a [`CifWarning`] naming its line: lines starting with `%`,
//! block names with spaces, quoted values over several lines or never closed, values without a
//! tag and tags without a value.

use super::{CifError, CifWarning};

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
    /// What the syntax layer assumed while reading this block.
    pub warnings: Vec<CifWarning>,
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

/// Lines a quoted value may run over before an unclosed quote is taken as plain text.
const MAX_QUOTED_LINES: usize = 20;

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    /// CIF 2.0 (`#\#CIF_2.0` header): triple quotes, and a quote closes at the next match.
    cif2: bool,
    warnings: Vec<CifWarning>,
}

impl<'a> Lexer<'a> {
    fn at_line_start(&self) -> bool {
        self.pos == 0 || self.src.as_bytes()[self.pos - 1] == b'\n'
    }

    /// Only blanks stand between the line start and `pos`.
    fn first_on_line(&self) -> bool {
        let before = &self.src.as_bytes()[..self.pos];
        before
            .iter()
            .rev()
            .take_while(|&&b| b != b'\n')
            .all(|b| b.is_ascii_whitespace())
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(CifWarning { line, message });
    }

    fn skip_line(&mut self) {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn next_token(&mut self) -> Result<Option<(Token, usize)>, CifError> {
        let bytes = self.src.as_bytes();
        loop {
            // Whitespace (Ctrl-Z, which DOS editors leave at the end, counts as such), comments,
            // and legacy lines starting with '%'.
            while self.pos < bytes.len()
                && (bytes[self.pos].is_ascii_whitespace() || bytes[self.pos] == 0x1a)
            {
                if bytes[self.pos] == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            if self.pos >= bytes.len() {
                return Ok(None);
            }
            if bytes[self.pos] == b'#' {
                self.skip_line();
                continue;
            }
            if bytes[self.pos] == b'%' && self.first_on_line() {
                self.warn(
                    self.line,
                    "line starting with '%' skipped as a comment".into(),
                );
                self.skip_line();
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
            if let Some(token) = self.quoted(c, line) {
                return Ok(Some(token));
            }
            // An unbalanced quote: read on as plain text, as pymatgen does.
            self.pos += 1;
            return self.next_token();
        }
        let start = self.pos;
        while self.pos < bytes.len() && !bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        let lower = word.to_ascii_lowercase();
        let token = if lower.starts_with("data_") {
            // The name is the rest of the line: some writers put spaces in it.
            let rest_start = self.pos;
            self.skip_line();
            let rest = self.src[rest_start..self.pos].trim();
            let name = if rest.is_empty() || rest.starts_with('#') {
                word[5..].to_string()
            } else {
                let name = format!("{} {rest}", &word[5..]);
                self.warn(line, format!("data block name with spaces: '{name}'"));
                name
            };
            Token::DataBlock(name)
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

    /// A quoted value starting at `pos`, or `None` when the quote never closes (the caller then
    /// reads it as plain text).
    fn quoted(&mut self, quote: u8, line: usize) -> Option<(Token, usize)> {
        let bytes = self.src.as_bytes();
        if self.cif2 && bytes[self.pos..].starts_with(&[quote; 3]) {
            return self.triple_quoted(quote, line);
        }
        // CIF 1.1: a quote closes only before whitespace; CIF 2.0: at the next match.
        let closes = |i: usize| {
            bytes[i] == quote
                && (self.cif2 || i + 1 == bytes.len() || bytes[i + 1].is_ascii_whitespace())
        };
        let start = self.pos + 1;
        let mut i = start;
        while i < bytes.len() && bytes[i] != b'\n' {
            if closes(i) {
                self.pos = i + 1;
                return Some(quoted_value(self.src[start..i].to_string(), line));
            }
            i += 1;
        }
        // Not closed on its line. Legacy files run quoted text over a few lines: accept that
        // when a later line ends the quote before anything that starts a new item.
        let mut lines = 0;
        let mut current_line = line;
        while i < bytes.len() && lines < MAX_QUOTED_LINES {
            // `i` is at a '\n': look at the next line.
            i += 1;
            current_line += 1;
            lines += 1;
            let rest = &self.src[i..];
            let next = rest.trim_start_matches([' ', '\t']);
            if next.starts_with(['_', ';', '#'])
                || next.to_ascii_lowercase().starts_with("loop_")
                || next.to_ascii_lowercase().starts_with("data_")
            {
                break;
            }
            while i < bytes.len() && bytes[i] != b'\n' {
                if closes(i) {
                    let text = self.src[start..i]
                        .lines()
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(" ");
                    self.warn(
                        line,
                        format!(
                            "quoted value runs over lines {line}–{current_line} (CIF allows \
                             several lines only in a ;-text field): read as one value"
                        ),
                    );
                    self.line = current_line;
                    self.pos = i + 1;
                    return Some(quoted_value(text, line));
                }
                i += 1;
            }
        }
        self.warn(
            line,
            format!(
                "unbalanced {} quote: the text after it is read as plain words",
                quote as char
            ),
        );
        None
    }

    fn triple_quoted(&mut self, quote: u8, line: usize) -> Option<(Token, usize)> {
        let start = self.pos + 3;
        let delimiter = std::str::from_utf8(&[quote; 3]).ok()?.to_string();
        let end = self.src[start..].find(&delimiter)? + start;
        let text = self.src[start..end].to_string();
        self.line += text.matches('\n').count();
        self.pos = end + 3;
        Some(quoted_value(text, line))
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
                    let text = self.src[start..i].trim().to_string();
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

/// CIF bytes as text: UTF-8, or Latin-1 (older files from Windows tools) with a warning naming
/// the first line that is not UTF-8.
pub fn decode(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, Option<CifWarning>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.into(), None),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            let text: String = bytes.iter().map(|&b| char::from(b)).collect();
            let warning = CifWarning {
                line,
                message: "the file is not UTF-8: read as Latin-1".into(),
            };
            (text.into(), Some(warning))
        }
    }
}

/// Parses CIF text into its data blocks; each block carries the warnings of its lines (and of
/// the lines before the first block).
pub fn parse(src: &str) -> Result<Vec<Block>, CifError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    // One line end: CRLF and old Mac CR become LF, so line numbers match what editors show.
    let normalised;
    let src = if src.contains('\r') {
        normalised = src.replace("\r\n", "\n").replace('\r', "\n");
        normalised.as_str()
    } else {
        src
    };
    let mut lexer = Lexer {
        src,
        pos: 0,
        line: 1,
        cif2: src.starts_with("#\\#CIF_2.0"),
        warnings: Vec::new(),
    };
    let mut blocks: Vec<Block> = Vec::new();
    let mut pending: Option<(Token, usize)> = None;
    let mut in_save_frame = false;
    // The last tag–value item, so that words after it on its line can join it.
    let mut last_item: Option<(usize, usize)> = None;
    // Words without a tag on one line, gathered into one warning: (line, warning index, text).
    let mut stray: Option<(usize, usize, String)> = None;
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
        if !matches!(token, Token::Value(_)) {
            last_item = None;
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
                match lexer.next_token()? {
                    Some((Token::Value(v), _)) => {
                        // Words can join only an unquoted value, on its own line.
                        last_item = (!v.quoted).then_some((blocks.len() - 1, v.line));
                        current(&mut blocks, line)?.items.push((tag, v));
                    }
                    other => {
                        lexer.warn(line, format!("tag {tag} has no value: ignored"));
                        pending = other;
                    }
                }
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
                    let message = format!(
                        "loop starting at line {line} has {} values for {} columns ({}), not a whole number of rows",
                        values.len(),
                        tags.len(),
                        tags.join(" ")
                    );
                    // A broken loop of what a structure is made of is an error; one of other
                    // data (a powder pattern, say) is skipped, as pymatgen reads past it.
                    if tags.iter().any(|t| structural_tag(t)) {
                        return Err(CifError::syntax(last, message));
                    }
                    lexer.warn(line, format!("{message}: skipped"));
                    continue;
                }
                let rows = values.chunks(tags.len()).map(<[Value]>::to_vec).collect();
                current(&mut blocks, line)?
                    .loops
                    .push(Loop { tags, rows, line });
            }
            Token::Value(v) => {
                // Legacy files leave values with spaces unquoted (`_symmetry_space_group_name_H-M
                // P 21/c`): words on the item's own line join its value; others are skipped, as
                // pymatgen skips them.
                match last_item {
                    Some((b, item_line)) if item_line == v.line && !v.quoted => {
                        if let Some((tag, value)) = blocks[b].items.last_mut() {
                            value.text.push(' ');
                            value.text.push_str(&v.text);
                            let message = format!(
                                "unquoted value with spaces: {tag} read as '{}'",
                                value.text
                            );
                            // One warning per line, not one per word.
                            match lexer.warnings.last_mut() {
                                Some(w)
                                    if w.line == v.line
                                        && w.message.starts_with("unquoted value with spaces") =>
                                {
                                    w.message = message
                                }
                                _ => lexer.warn(v.line, message),
                            }
                        }
                    }
                    _ => {
                        last_item = None;
                        let stray_message =
                            |text: &str| format!("text without a tag ignored: '{text}'");
                        match &mut stray {
                            Some((line, index, text))
                                if *line == v.line && *index + 1 == lexer.warnings.len() =>
                            {
                                text.push(' ');
                                text.push_str(&v.text);
                                lexer.warnings[*index].message = stray_message(text);
                            }
                            _ => {
                                lexer.warn(v.line, stray_message(&v.text));
                                stray = Some((v.line, lexer.warnings.len() - 1, v.text.clone()));
                            }
                        }
                    }
                }
            }
        }
    }
    if blocks.is_empty() {
        return Err(CifError::syntax(1, "no data_ block: not a CIF file".into()));
    }
    // Each warning goes to the block holding its line; those before the first block to all.
    let starts: Vec<usize> = blocks.iter().map(|b| b.line).collect();
    for w in lexer.warnings {
        match starts.iter().rposition(|&s| s <= w.line) {
            Some(k) => blocks[k].warnings.push(w),
            None => blocks.iter_mut().for_each(|b| b.warnings.push(w.clone())),
        }
    }
    Ok(blocks)
}

/// Tags a structure is read from: cell, symmetry, atom sites.
fn structural_tag(tag: &str) -> bool {
    ["_cell", "_atom_site", "_symmetry", "_space_group"]
        .iter()
        .any(|p| tag.starts_with(p))
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
        assert!(blocks.iter().all(|b| b.warnings.is_empty()));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("data_a\nloop_\n_atom_site_a\n_atom_site_b\n1 2\n3\n").unwrap_err();
        assert_eq!(e.line(), 6);
        // A ragged loop of other data is skipped with a warning.
        let b = &parse("data_a\nloop_\n_pd_a\n_pd_b\n1 2\n3\n_x 1\n").unwrap()[0];
        assert!(b.loops.is_empty() && b.value("_x").is_some());
        assert_eq!(b.warnings[0].line, 2);
        let e = parse("data_a\n_t\n;\nnever closed\n").unwrap_err();
        assert_eq!(e.line(), 3);
        let e = parse("_a 1\n").unwrap_err();
        assert_eq!(e.line(), 1);
        assert!(parse("").is_err());
    }

    fn warnings_of(cif: &str) -> Vec<(usize, String)> {
        parse(cif).unwrap()[0]
            .warnings
            .iter()
            .map(|w| (w.line, w.message.clone()))
            .collect()
    }

    #[test]
    fn legacy_syntax_is_read_with_a_warning_naming_its_line() {
        // '%' lines, a block name with spaces, CR line ends, tabs and a trailing Ctrl-Z.
        let cif = "% written by an old tool\rdata_Na3PO4 phase II\r_a\t1\r_b 'two\r  lines'\r\x1a";
        let blocks = parse(cif).unwrap();
        assert_eq!(blocks[0].name, "Na3PO4 phase II");
        assert_eq!(blocks[0].value("_a").unwrap().text, "1");
        assert_eq!(blocks[0].value("_b").unwrap().text, "two lines");
        let lines: Vec<usize> = blocks[0].warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2, 4], "{:?}", blocks[0].warnings);

        // An unbalanced quote is plain text; an unquoted symbol with spaces joins its value;
        // stray words and valueless tags are skipped.
        let cif = "data_a\n_a 'open\n_sg P 1 21/c 1\n_c\n_d 'q'\nstray words\n";
        let w = warnings_of(cif);
        let b = &parse(cif).unwrap()[0];
        assert_eq!(b.value("_a").unwrap().text, "open");
        assert_eq!(b.value("_sg").unwrap().text, "P 1 21/c 1");
        assert!(b.value("_c").is_none());
        assert_eq!(b.value("_d").unwrap().text, "q");
        let lines: Vec<usize> = w.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 6], "{w:?}");
        assert!(w[1].1.contains("'P 1 21/c 1'") && w[3].1.contains("'stray words'"));
    }

    #[test]
    fn cif2_triple_quotes_and_latin1() {
        let b = &parse("#\\#CIF_2.0\ndata_a\n_t \"\"\"x\ny\"\"\"\n_v 1\n").unwrap()[0];
        assert_eq!(b.value("_t").unwrap().text, "x\ny");
        assert_eq!(b.value("_v").unwrap().line, 5);
        let (text, warning) = decode(b"data_a\n_name 'M\xfcller'\n");
        assert_eq!(warning.unwrap().line, 2);
        assert_eq!(
            parse(&text).unwrap()[0].value("_name").unwrap().text,
            "M\u{fc}ller"
        );
    }
}
