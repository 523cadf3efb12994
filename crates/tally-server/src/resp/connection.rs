//! Commands about the connection and the server rather than counters: `HELLO`, `CLIENT` and
//! `CONFIG`.

use super::commands::{Session, upper_case};
use super::glob;
use super::reply::{Protocol, Reply};
use tally_core::parse_delta;

/// Executes `HELLO [protover [AUTH username password] [SETNAME clientname]]`, which switches
/// the connection to RESP2 or RESP3. Tally has no users, so `AUTH` accepts any credentials, as
/// a Redis server without passwords does.
pub fn hello(session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let protocol = match args.first().map(|version| parse_delta(version)) {
        None => session.protocol,
        Some(Ok(2)) => Protocol::Resp2,
        Some(Ok(3)) => Protocol::Resp3,
        Some(Ok(_)) => return Reply::error("NOPROTO unsupported protocol version"),
        Some(Err(_)) => {
            return Reply::error("ERR Protocol version is not an integer or out of range");
        }
    };
    let mut client_name = None;
    let mut position = 1;
    while let Some(option) = args.get(position) {
        let num_values = args.len() - position - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && num_values >= 2 {
            position += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && num_values >= 1 {
            client_name = Some(&args[position + 1]);
            position += 2;
        } else {
            return Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }
    if let Some(name) = client_name
        && let Err(reply) = set_client_name(session, name)
    {
        return reply;
    }

    session.protocol = protocol;
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("tally")),
        (
            Reply::bulk("version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Reply::bulk("proto"), Reply::Integer(protocol.number())),
        (Reply::bulk("id"), client_id(session)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// Executes `CLIENT ID`, `CLIENT SETNAME` and `CLIENT GETNAME`. Other subcommands reply OK and
/// change nothing, which is enough for the clients that send them when they connect.
pub fn client(session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let mut buffer = [0u8; 16];
    let subcommand = upper_case(&args[0], &mut buffer);
    match (subcommand.as_ref(), args.len()) {
        ("ID", 1) => client_id(session),
        ("GETNAME", 1) => match &session.client_name {
            Some(name) => Reply::Bulk(name.clone()),
            None => Reply::Nil,
        },
        ("SETNAME", 2) => match set_client_name(session, &args[1]) {
            Ok(()) => Reply::Simple("OK"),
            Err(reply) => reply,
        },
        ("ID" | "GETNAME" | "SETNAME", _) => Reply::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            subcommand.to_lowercase()
        )),
        _ => Reply::Simple("OK"),
    }
}

fn client_id(session: &Session) -> Reply {
    Reply::Integer(i64::try_from(session.client_id).unwrap_or(i64::MAX))
}

/// Sets the connection's name; an empty name removes it. Names follow Redis's rule: printable
/// ASCII without spaces.
fn set_client_name(session: &mut Session, name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|byte| !(b'!'..=b'~').contains(byte)) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    session.client_name = (!name.is_empty()).then(|| name.to_vec());
    Ok(())
}

/// The configuration parameters that `CONFIG GET` reports, with the values that tell clients
/// such as redis-benchmark that there is no Redis persistence to manage.
const CONFIG_PARAMETERS: [(&str, &str); 2] = [("save", ""), ("appendonly", "no")];

/// Executes `CONFIG GET pattern...`; other subcommands are rejected, because Tally reads its
/// settings only at start.
pub fn config(args: &[Vec<u8>]) -> Reply {
    let mut buffer = [0u8; 16];
    let subcommand = upper_case(&args[0], &mut buffer);
    match (subcommand.as_ref(), args.len()) {
        ("GET", 2..) => config_get(&args[1..]),
        ("GET", _) => Reply::error("ERR wrong number of arguments for 'config|get' command"),
        _ => Reply::error(format!(
            "ERR CONFIG {subcommand} is not supported: Tally reads its settings from flags, \
             environment variables or a configuration file when it starts"
        )),
    }
}

/// Returns the parameters that any argument names, each once. As in Redis 7.0, an argument
/// without `*`, `?` or `[` is a parameter name, echoed as the client spelled it. Any other
/// argument is a glob pattern that returns the names it matches. Both ignore case.
fn config_get(arguments: &[Vec<u8>]) -> Reply {
    let mut entries: Vec<(Reply, Reply)> = Vec::new();
    let mut returned = [false; CONFIG_PARAMETERS.len()];
    for argument in arguments {
        let lower_case = argument.to_ascii_lowercase();
        let is_pattern = argument.iter().any(|byte| b"*?[".contains(byte));
        for (index, (name, value)) in CONFIG_PARAMETERS.iter().enumerate() {
            let found = if is_pattern {
                glob::matches(&lower_case, name.as_bytes())
            } else {
                lower_case == name.as_bytes()
            };
            if !found || returned[index] {
                continue;
            }
            returned[index] = true;
            let shown_name = if is_pattern {
                name.as_bytes().to_vec()
            } else {
                argument.clone()
            };
            entries.push((Reply::Bulk(shown_name), Reply::bulk(*value)));
        }
    }
    Reply::Map(entries)
}
