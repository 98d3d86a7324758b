//! Parsers for the master CLI: `show proc` and the 2.7+ `reload` reply.
//!
//! `show proc` (2.6 to 3.x) is a header naming the columns, the master's line, then sections
//! (`# workers`, `# old workers`, `# programs`, `# old programs`), and the CLI's empty line that
//! ends every reply. Columns are found by the header's names, so older layouts (2.2-2.4 had a
//! `<relative PID>` column, `[was: N]` on old workers) and 3.x's `show proc debug` columns parse
//! too. A bracketed field (`[failed: 1]`) is one field even though it holds a space.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_till1, take_while1};
use nom::character::complete::{char, one_of, space0, space1, u32 as dec_u32};
use nom::combinator::{eof, recognize};
use nom::multi::many0;
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use super::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub reloads: u32,
}

/// `show proc` on the master CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcList {
    pub master: Proc,
    /// `[failed: N]` on the master line (0 where the version does not print it).
    pub failed_reloads: u32,
    pub workers: Vec<Proc>,
    pub old_workers: Vec<Proc>,
}

impl ProcList {
    /// The worker that takes new connections: the one under `# workers`. From 3.1 (measured on
    /// 3.2.26 and 3.4.7, not on 3.0.11) a failed reload leaves `# workers` empty and lists the
    /// worker that goes on serving under `# old workers`, its reload count up by one like every
    /// other worker's; it is then the one with the fewest reloads (workers left over from
    /// earlier reloads were already old, so they count more).
    pub fn serving_worker(&self) -> Option<&Proc> {
        self.workers
            .first()
            .or_else(|| self.old_workers.iter().min_by_key(|w| w.reloads))
    }
}

/// The 2.7+ reply to `reload`: `Success=1|0` then the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReply {
    pub success: bool,
    pub log: String,
}

const SHOW_PROC: &str = "show proc";
const RELOAD: &str = "reload";
const HEADER_START: &str = "#<PID>";

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `#<PID>          <type>          <reloads> ...`: the column names without their brackets.
fn header(i: &str) -> IResult<&str, Vec<&str>> {
    // `<relative PID>` (2.2-2.4) holds a space.
    let column = || delimited(char('<'), take_till1(|c| c == '>' || c == '\n'), char('>'));
    terminated(
        (
            preceded(char('#'), column()),
            many0(preceded(space1, column())),
        ),
        (space0, eof),
    )
    .map(|(first, mut rest)| {
        rest.insert(0, first);
        rest
    })
    .parse(i)
}

/// One field of a process line: `[...]` (may hold spaces) or a run of non-blanks.
fn field(i: &str) -> IResult<&str, &str> {
    alt((
        recognize((char('['), take_till(|c| c == ']'), char(']'))),
        take_till1(is_space),
    ))
    .parse(i)
}

/// `<pid> <type> <field>...`.
fn proc_line(i: &str) -> IResult<&str, (u32, &str, Vec<&str>)> {
    terminated(
        (
            dec_u32,
            preceded(space1, take_till1(is_space)),
            many0(preceded(space1, field)),
        ),
        (space0, eof),
    )
    .parse(i)
}

/// `[failed: N]`.
fn failed_field(i: &str) -> IResult<&str, u32> {
    terminated(
        delimited((tag("[failed:"), space0), dec_u32, (space0, char(']'))),
        eof,
    )
    .parse(i)
}

/// `# <section name>`.
fn section_header(i: &str) -> IResult<&str, &str> {
    terminated(preceded((char('#'), space1), take_while1(|_| true)), eof).parse(i)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Workers,
    OldWorkers,
    /// Programs, old programs, and any section a later version may add.
    Other,
}

fn syntax(what: &'static str, line: usize, text: &str) -> ParseError {
    ParseError::Syntax {
        what,
        line,
        snippet: text.chars().take(80).collect(),
    }
}

/// A process line whose type must be `want` (`None`: any type, e.g. a program's name).
fn parse_proc<'a>(
    line_no: usize,
    line: &'a str,
    want: Option<&str>,
    reloads_at: usize,
) -> Result<(Proc, Vec<&'a str>), ParseError> {
    let (_, (pid, kind, fields)) = proc_line(line).map_err(|_| syntax(SHOW_PROC, line_no, line))?;
    if want.is_some_and(|w| w != kind) {
        return Err(syntax(SHOW_PROC, line_no, line));
    }
    let reloads = fields
        .get(reloads_at)
        .and_then(|f| dec_u32::<&str, ()>(f).ok())
        .and_then(|(rest, n)| rest.is_empty().then_some(n))
        .ok_or_else(|| syntax(SHOW_PROC, line_no, line))?;
    Ok((Proc { pid, reloads }, fields))
}

pub fn parse_show_proc(text: &str) -> Result<ProcList, ParseError> {
    let truncated = ParseError::Truncated { what: SHOW_PROC };
    let mut lines = text.split('\n').enumerate().map(|(n, l)| (n + 1, l));
    // `split` always yields a last piece: what follows the last '\n', empty when the text ends
    // with one. A non-empty last piece is a line cut short.
    let complete = text.matches('\n').count();

    let Some((_, first)) = lines.next() else {
        return Err(truncated);
    };
    if complete == 0 {
        // Only part of the header arrived: truncated if it still looks like one.
        return if HEADER_START.starts_with(first) || first.starts_with(HEADER_START) {
            Err(truncated)
        } else {
            Err(syntax(SHOW_PROC, 1, first))
        };
    }
    let (_, columns) = header(first).map_err(|_| syntax(SHOW_PROC, 1, first))?;
    // Fields are counted after `<PID> <type>`.
    let reloads_at = match columns.as_slice() {
        ["PID", "type", rest @ ..] => rest
            .iter()
            .position(|c| *c == "reloads")
            .ok_or_else(|| syntax(SHOW_PROC, 1, first))?,
        _ => return Err(syntax(SHOW_PROC, 1, first)),
    };

    let mut master: Option<(Proc, u32)> = None;
    let mut section: Option<Section> = None;
    let mut saw_workers = false;
    let mut workers = Vec::new();
    let mut old_workers = Vec::new();
    let mut ended = false;

    for (n, line) in lines {
        if n > complete {
            // The piece after the last '\n': empty for a whole reply.
            if !line.is_empty() {
                return Err(truncated);
            }
            break;
        }
        if ended {
            // Only the reply's terminating empty line(s) may follow the end.
            if line.is_empty() {
                continue;
            }
            return Err(syntax(SHOW_PROC, n, line));
        }
        if line.is_empty() {
            ended = true;
            continue;
        }
        if master.is_none() {
            let (proc, fields) = parse_proc(n, line, Some("master"), reloads_at)?;
            let failed = fields
                .iter()
                .find_map(|f| failed_field(f).ok().map(|(_, n)| n))
                .unwrap_or(0);
            master = Some((proc, failed));
            continue;
        }
        if line.starts_with('#') {
            let (_, name) = section_header(line).map_err(|_| syntax(SHOW_PROC, n, line))?;
            section = Some(match name.trim_end() {
                "workers" => {
                    saw_workers = true;
                    Section::Workers
                }
                "old workers" => Section::OldWorkers,
                _ => Section::Other,
            });
            continue;
        }
        match section {
            None => return Err(syntax(SHOW_PROC, n, line)),
            Some(Section::Workers) => {
                workers.push(parse_proc(n, line, Some("worker"), reloads_at)?.0)
            }
            Some(Section::OldWorkers) => {
                old_workers.push(parse_proc(n, line, Some("worker"), reloads_at)?.0)
            }
            Some(Section::Other) => {
                // Programs: checked for shape, not kept.
                proc_line(line).map_err(|_| syntax(SHOW_PROC, n, line))?;
            }
        }
    }

    match master {
        Some((master, failed_reloads)) if ended && saw_workers => Ok(ProcList {
            master,
            failed_reloads,
            workers,
            old_workers,
        }),
        _ => Err(truncated),
    }
}

/// `Success=0|1` at the start of a reload reply.
fn status(i: &str) -> IResult<&str, bool> {
    delimited(tag("Success="), one_of("01"), char('\n'))
        .map(|c| c == '1')
        .parse(i)
}

/// `Ok(None)` when the reply carries no status (2.6 closes the connection with nothing).
pub fn parse_reload_reply(text: &str) -> Result<Option<ReloadReply>, ParseError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let truncated = ParseError::Truncated { what: RELOAD };
    let (rest, success) = match status(text) {
        Ok(ok) => ok,
        Err(_) => {
            let first = text.split('\n').next().unwrap_or_default();
            let complete_line = text.contains('\n');
            return if !complete_line
                && ("Success=0".starts_with(text) || "Success=1".starts_with(text))
            {
                Err(truncated)
            } else {
                Err(syntax(RELOAD, 1, first))
            };
        }
    };
    // 3.1+ leaves out the `--` separator when the startup log is empty.
    let log = match rest {
        "-" | "--" => return Err(truncated),
        _ => rest.strip_prefix("--\n").unwrap_or(rest),
    };
    Ok(Some(ReloadReply {
        success,
        log: log.trim_end().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRESH: &str = include_str!("../../../tests/fixtures/haproxy-2.6/show-proc.txt");
    const OLD_WORKERS: &str =
        include_str!("../../../tests/fixtures/haproxy-2.6/show-proc-old-workers.txt");
    const FAILED: &str =
        include_str!("../../../tests/fixtures/haproxy-2.6/show-proc-failed-reload.txt");

    fn proc(pid: u32, reloads: u32) -> Proc {
        Proc { pid, reloads }
    }

    #[test]
    fn a_fresh_master_lists_its_one_worker() {
        assert_eq!(
            parse_show_proc(FRESH).unwrap(),
            ProcList {
                master: proc(7818, 0),
                failed_reloads: 0,
                workers: vec![proc(7826, 0)],
                old_workers: vec![],
            }
        );
    }

    #[test]
    fn after_a_reload_the_new_worker_is_current_and_the_old_one_is_leaving() {
        assert_eq!(
            parse_show_proc(OLD_WORKERS).unwrap(),
            ProcList {
                master: proc(7818, 1),
                failed_reloads: 0,
                workers: vec![proc(9915, 0)],
                old_workers: vec![proc(7826, 1)],
            }
        );
    }

    #[test]
    fn a_failed_reload_raises_the_failed_count_and_keeps_the_worker() {
        assert_eq!(
            parse_show_proc(FAILED).unwrap(),
            ProcList {
                master: proc(7818, 2),
                failed_reloads: 1,
                workers: vec![proc(9915, 1)],
                old_workers: vec![proc(7826, 2)],
            }
        );
    }

    #[test]
    fn every_strict_prefix_of_a_captured_reply_is_an_error() {
        for fixture in [FRESH, OLD_WORKERS, FAILED] {
            for end in (0..fixture.len()).filter(|i| fixture.is_char_boundary(*i)) {
                assert!(
                    parse_show_proc(&fixture[..end]).is_err(),
                    "prefix of {end} bytes accepted"
                );
            }
        }
    }

    #[test]
    fn a_cut_reply_is_reported_truncated_not_malformed() {
        let cut = &FRESH[..FRESH.find("# workers").unwrap() + 4];
        assert_eq!(
            parse_show_proc(cut),
            Err(ParseError::Truncated { what: SHOW_PROC })
        );
        assert_eq!(
            parse_show_proc("#<PI"),
            Err(ParseError::Truncated { what: SHOW_PROC })
        );
    }

    #[test]
    fn an_unknown_command_reply_is_a_syntax_error_naming_the_line() {
        let reply = "Unknown command, but maybe one of the following ones is a better match:\n  show proc : show processes status\n\n";
        match parse_show_proc(reply) {
            Err(ParseError::Syntax {
                line: 1, snippet, ..
            }) => {
                assert!(snippet.starts_with("Unknown command"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_worker_line_with_a_non_numeric_reload_count_is_refused() {
        let bad = FRESH.replace(
            "7826            worker          0 ",
            "7826            worker          x ",
        );
        assert!(matches!(
            parse_show_proc(&bad),
            Err(ParseError::Syntax { line: 4, .. })
        ));
    }

    /// The 3.x layout, as `cli_io_handler_show_proc` prints it: no `# programs` header when
    /// there is no program, and the optional `show proc debug` columns.
    #[test]
    fn the_3_x_layout_without_programs_and_with_debug_columns_parses() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>      \t\t <ipc_fd[0]>     <ipc_fd[1]>    \n\
                    1               master          3 [failed: 2]   0d00h01m10s     3.0.11-1       \t\t 3               4              \n\
                    # workers\n\
                    40              worker          0               0d00h00m02s     3.0.11-1       \t\t 7               -1             \n\
                    # old workers\n\
                    30              worker          1               0d00h00m40s     3.0.11-1       \t\t 5               -1             \n\
                    \n";
        assert_eq!(
            parse_show_proc(text).unwrap(),
            ProcList {
                master: proc(1, 3),
                failed_reloads: 2,
                workers: vec![proc(40, 0)],
                old_workers: vec![proc(30, 1)],
            }
        );
    }

    /// Captured from 3.2.26 after a reload that failed (the config had an unknown keyword):
    /// the worker still serving is listed as old, `# workers` is empty.
    #[test]
    fn after_a_failed_reload_on_3_2_the_serving_worker_is_listed_as_old() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
                    22216           master          1 [failed: 1]   0d00h00m00s     3.2.26-1       \n\
                    # workers\n\
                    # old workers\n\
                    22222           worker          1               0d00h00m00s     3.2.26-1       \n\
                    \n";
        let procs = parse_show_proc(text).unwrap();
        assert_eq!(
            procs,
            ProcList {
                master: proc(22216, 1),
                failed_reloads: 1,
                workers: vec![],
                old_workers: vec![proc(22222, 1)],
            }
        );
        assert_eq!(procs.serving_worker(), Some(&proc(22222, 1)));
        // With a worker still draining from an earlier reload, the survivor has fewer reloads.
        let draining = ProcList {
            old_workers: vec![proc(20000, 2), proc(22222, 1)],
            ..procs
        };
        assert_eq!(draining.serving_worker(), Some(&proc(22222, 1)));
    }

    /// 2.2-2.4 had a `<relative PID>` column, `[was: N]` on old workers, no failed count.
    #[test]
    fn the_older_layout_with_a_relative_pid_column_parses() {
        let text = "#<PID>          <type>          <relative PID>  <reloads>       <uptime>        <version>      \n\
                    100             master          0               2               0d00h00m10s     2.4.22         \n\
                    # workers\n\
                    120             worker          1               0               0d00h00m01s     2.4.22         \n\
                    # old workers\n\
                    110             worker          [was: 1]        1               0d00h00m10s     2.4.22         \n\
                    # programs\n\
                    130             dataplane       -               2               0d00h00m10s     -              \n\
                    \n";
        assert_eq!(
            parse_show_proc(text).unwrap(),
            ProcList {
                master: proc(100, 2),
                failed_reloads: 0,
                workers: vec![proc(120, 0)],
                old_workers: vec![proc(110, 1)],
            }
        );
    }

    #[test]
    fn a_2_6_reload_reply_carries_no_status() {
        assert_eq!(parse_reload_reply(""), Ok(None));
        assert_eq!(parse_reload_reply("\n"), Ok(None));
    }

    #[test]
    fn a_2_7_reload_reply_carries_the_status_and_the_startup_log() {
        let ok = "Success=1\n--\n[NOTICE]   (1) : haproxy version is 3.0.11-1\n[NOTICE]   (1) : path to executable is /usr/sbin/haproxy\n\n";
        assert_eq!(
            parse_reload_reply(ok),
            Ok(Some(ReloadReply {
                success: true,
                log: "[NOTICE]   (1) : haproxy version is 3.0.11-1\n[NOTICE]   (1) : path to executable is /usr/sbin/haproxy".into(),
            }))
        );
        let failed = "Success=0\n--\n[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg:15] : unknown keyword 'this' in 'backend' section\n";
        let reply = parse_reload_reply(failed).unwrap().unwrap();
        assert!(!reply.success);
        assert!(reply.log.contains("unknown keyword 'this'"));
        assert_eq!(
            parse_reload_reply("Success=1\n"),
            Ok(Some(ReloadReply {
                success: true,
                log: String::new()
            }))
        );
    }

    #[test]
    fn a_cut_or_foreign_reload_reply_is_an_error() {
        for cut in [
            "S",
            "Success",
            "Success=",
            "Success=1",
            "Success=0\n-",
            "Success=0\n--",
        ] {
            assert_eq!(
                parse_reload_reply(cut),
                Err(ParseError::Truncated { what: RELOAD }),
                "{cut:?}"
            );
        }
        for bad in [
            "Permission denied\n",
            "Success=2\n",
            "success=1\n",
            "Success=1 \n",
        ] {
            assert!(matches!(
                parse_reload_reply(bad),
                Err(ParseError::Syntax { line: 1, .. })
            ));
        }
    }

    proptest! {
        #[test]
        fn show_proc_never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse_show_proc(&text);
        }

        #[test]
        fn show_proc_never_panics_on_text_made_of_its_own_tokens(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("#<PID>"), Just("<type>"), Just("<reloads>"), Just("master"),
                    Just("worker"), Just("[failed: 1]"), Just("[failed:"), Just("# workers"),
                    Just("# old workers"), Just("# programs"), Just("42"), Just("4294967296"),
                    Just(" "), Just("\t"), Just("\n"), Just("\n\n"), Just("["), Just("]"),
                ],
                0..40,
            )
        ) {
            let _ = parse_show_proc(&parts.concat());
        }

        #[test]
        fn reload_reply_never_panics(text in "(Success=[01]?\n?(--\n)?)?\\PC*") {
            let _ = parse_reload_reply(&text);
        }
    }
}
