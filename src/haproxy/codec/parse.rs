//! nom parsers of the replies swarm-lb reads. Input is a reply body as the client hands it out
//! (the text before the prompt). Every line, the last included, must end with `\n`: a body cut
//! inside a line is reported as truncated. Empty lines are ignored (non-interactive mode ends a
//! reply with one). Nothing here panics on any input.

use std::net::{IpAddr, Ipv4Addr};

use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::character::complete::{char, digit1, hex_digit1, space0};
use nom::combinator::{all_consuming, opt, rest};
use nom::multi::separated_list1;
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::{Info, MapEntry, ParseError, ServerRow, Version};
use crate::model::{BackendName, ServerName};

/// The numbered, newline-terminated, non-empty lines of `text`.
fn lines<'a>(
    what: &'static str,
    text: &'a str,
) -> impl Iterator<Item = Result<(usize, &'a str), ParseError>> + 'a {
    text.split_inclusive('\n')
        .enumerate()
        .filter_map(move |(i, line)| match line.strip_suffix('\n') {
            None => Some(Err(ParseError::Truncated { what })),
            Some("") => None,
            Some(line) => Some(Ok((i + 1, line))),
        })
}

fn syntax(what: &'static str, line: usize, text: &str) -> ParseError {
    const MAX: usize = 80;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ParseError::Syntax {
        what,
        line,
        snippet: text[..end].to_owned(),
    }
}

/// A space-separated field (HAProxy prints `-` for an empty one).
fn field(input: &str) -> IResult<&str, &str> {
    take_till1(|c| c == ' ').parse(input)
}

fn fields(input: &str) -> IResult<&str, Vec<&str>> {
    all_consuming(separated_list1(char(' '), field)).parse(input)
}

const SERVERS_STATE: &str = "show servers state";

/// The columns of `show servers state` swarm-lb reads, located by the `# ` header so that a
/// version adding columns still parses (2.4 to 3.2 print the same 25).
struct Columns {
    count: usize,
    backend: usize,
    server: usize,
    addr: usize,
    op_state: usize,
    admin_state: usize,
    /// Optional: a reply without it reads as `unknown` (0).
    check_result: Option<usize>,
    /// Optional: a reply without it reads as no check (0).
    check_state: Option<usize>,
    port: usize,
}

impl Columns {
    fn from_header(names: &[&str]) -> Option<Self> {
        let at = |name: &str| names.iter().position(|n| *n == name);
        Some(Self {
            count: names.len(),
            backend: at("be_name")?,
            server: at("srv_name")?,
            addr: at("srv_addr")?,
            op_state: at("srv_op_state")?,
            admin_state: at("srv_admin_state")?,
            check_result: at("srv_check_result"),
            check_state: at("srv_check_state"),
            port: at("srv_port")?,
        })
    }

    /// One row; `last`: the row before, whose backend name is shared when it is the same
    /// (HAProxy lists a backend's servers together: one name per backend, not per server).
    fn row(&self, values: &[&str], last: Option<&ServerRow>) -> Option<ServerRow> {
        if values.len() != self.count {
            return None;
        }
        let backend = match last {
            Some(last) if last.backend.as_str() == values[self.backend] => last.backend.clone(),
            _ => BackendName::parse(values[self.backend]).ok()?,
        };
        Some(ServerRow {
            backend,
            server: ServerName::parse(values[self.server]).ok()?,
            addr: server_addr(values[self.addr])?,
            port: values[self.port].parse().ok()?,
            op_state: values[self.op_state].parse().ok()?,
            admin_state: values[self.admin_state].parse().ok()?,
            check_result: match self.check_result {
                Some(i) => values[i].parse().ok()?,
                None => 0,
            },
            check_state: match self.check_state {
                Some(i) => values[i].parse().ok()?,
                None => 0,
            },
        })
    }
}

/// `srv_addr`: an IP, or `-` for a server without one (a hostname not resolved, declared with
/// `init-addr none`), read as the unspecified address `0.0.0.0`.
fn server_addr(text: &str) -> Option<IpAddr> {
    if text == "-" {
        return Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    text.parse().ok()
}

/// `show servers state [<backend>]`: line `1` (the format version), a `# ` header naming the
/// columns, then one row per server. No rows is fine (no backend with servers).
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerRow>, ParseError> {
    let what = SERVERS_STATE;
    let mut lines = lines(what, text);
    let Some(first) = lines.next() else {
        return Err(ParseError::Truncated { what });
    };
    let (n, line) = first?;
    if all_consuming(tag::<_, _, nom::error::Error<&str>>("1"))
        .parse(line)
        .is_err()
    {
        return Err(syntax(what, n, line));
    }
    let Some(second) = lines.next() else {
        return Err(ParseError::Truncated { what });
    };
    let (n, line) = second?;
    let columns = preceded(tag("# "), fields)
        .parse(line)
        .ok()
        .and_then(|(_, names)| Columns::from_header(&names))
        .ok_or_else(|| syntax(what, n, line))?;
    let mut rows = Vec::new();
    for next in lines {
        let (n, line) = next?;
        let row = fields(line)
            .ok()
            .and_then(|(_, values)| columns.row(&values, rows.last()))
            .ok_or_else(|| syntax(what, n, line))?;
        rows.push(row);
    }
    Ok(rows)
}

/// One `show map` line: `0x<entry address> <key> <value>`. The value is the rest of the line
/// (a map value may hold spaces); the key is one field.
fn map_line(input: &str) -> IResult<&str, (&str, &str)> {
    all_consuming((
        preceded(tag("0x"), hex_digit1),
        char(' '),
        field,
        char(' '),
        rest,
    ))
    .map(|(_, _, key, _, value)| (key, value))
    .parse(input)
}

/// `show map <file>`: one line per entry, in the map's order (the first of duplicate keys is
/// the one lookups return). An empty map prints nothing.
pub fn parse_show_map(text: &str) -> Result<Vec<MapEntry>, ParseError> {
    let what = "show map";
    let mut entries = Vec::new();
    for next in lines(what, text) {
        let (n, line) = next?;
        match map_line(line) {
            Ok((_, (key, value))) if !value.is_empty() => entries.push(MapEntry {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            _ => return Err(syntax(what, n, line)),
        }
    }
    Ok(entries)
}

/// `show backend`: the `# name` header, then one backend name per line (measured on 2.6.12
/// and 3.4.7). A name HAProxy could not have (see [`BackendName::parse`]) is an error.
pub fn parse_show_backend(text: &str) -> Result<Vec<BackendName>, ParseError> {
    let what = "show backend";
    let mut names = Vec::new();
    for next in lines(what, text) {
        let (n, line) = next?;
        if n == 1 && line == "# name" {
            continue;
        }
        match BackendName::parse(line) {
            Ok(name) if n > 1 => names.push(name),
            _ => return Err(syntax(what, n, line)),
        }
    }
    Ok(names)
}

/// `Field: value` (field names may hold spaces: `Unstoppable Jobs`, `Build info`).
fn info_line(input: &str) -> IResult<&str, (&str, &str)> {
    all_consuming((take_till1(|c| c == ':'), char(':'), space0, rest))
        .map(|(key, _, _, value)| (key, value))
        .parse(input)
}

fn number<T: std::str::FromStr>(input: &str) -> IResult<&str, T> {
    nom::combinator::map_res(digit1, str::parse::<T>).parse(input)
}

/// `2.6.12-1+deb12u4`, `3.0.11-1`, `2.8.5`, `3.1-dev3`: major.minor[.patch] then anything.
fn version(input: &str) -> IResult<&str, Version> {
    (
        number::<u16>,
        preceded(char('.'), number::<u16>),
        opt(preceded(char('.'), number::<u16>)),
        opt(preceded(
            take_while1(|c: char| matches!(c, '-' | '+' | '~')),
            rest,
        )),
    )
        .map(|(major, minor, patch, _)| Version {
            major,
            minor,
            patch: patch.unwrap_or(0),
        })
        .parse(input)
}

/// `show info`: the fields swarm-lb uses (`Version`, `Pid`, `Uptime_sec`); the rest is only
/// checked to be `Field: value` lines.
pub fn parse_show_info(text: &str) -> Result<Info, ParseError> {
    let what = "show info";
    let (mut version_, mut pid, mut uptime_sec) = (None, None, None);
    for next in lines(what, text) {
        let (n, line) = next?;
        let bad = || syntax(what, n, line);
        let (_, (key, value)) = info_line(line).map_err(|_| bad())?;
        match key {
            "Version" => {
                let (_, v) = all_consuming(version).parse(value).map_err(|_| bad())?;
                version_ = Some(v);
            }
            "Pid" => pid = Some(value.parse::<u32>().map_err(|_| bad())?),
            "Uptime_sec" => uptime_sec = Some(value.parse::<u64>().map_err(|_| bad())?),
            _ => {}
        }
    }
    let missing = |field| ParseError::Missing { what, field };
    Ok(Info {
        version: version_.ok_or_else(|| missing("Version"))?,
        pid: pid.ok_or_else(|| missing("Pid"))?,
        uptime_sec: uptime_sec.ok_or_else(|| missing("Uptime_sec"))?,
    })
}
