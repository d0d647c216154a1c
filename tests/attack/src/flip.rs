//! `flip`: exchange pairs of names with `renameat2(RENAME_EXCHANGE)`, round-robin, as fast as
//! possible (or with a pause), until the stop condition. Whatever the other side checks by
//! one name, it may then open as the other.

use crate::Stop;
use rustix::fs::{RenameFlags, CWD};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Opts {
    pairs: Vec<(PathBuf, PathBuf)>,
    pause: Option<Duration>,
    stop: Stop,
}

pub fn parse(p: &mut lexopt::Parser) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut names: Vec<PathBuf> = Vec::new();
    let mut o = Opts {
        pairs: Vec::new(),
        pause: None,
        stop: Stop::default(),
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("while") => o.stop.while_file = Some(p.value()?.into()),
            Long("timeout") => o.stop.deadline = Some(Instant::now() + crate::secs(p.value()?)?),
            Long("pause-us") => o.pause = Some(Duration::from_micros(p.value()?.parse()?)),
            Value(v) => names.push(v.into()),
            _ => return Err(arg.unexpected()),
        }
    }
    if names.is_empty() || names.len() % 2 != 0 {
        return Err("flip needs pairs of names: A B [A B]...".into());
    }
    if o.stop.deadline.is_none() && o.stop.while_file.is_none() {
        return Err("flip needs --while FILE or --timeout SECS".into());
    }
    o.pairs = names
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    Ok(o)
}

pub fn main(o: Opts) -> Result<(), lexopt::Error> {
    let (mut flips, mut errors) = (0u64, 0u64);
    'outer: loop {
        for (a, b) in &o.pairs {
            match rustix::fs::renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
                Ok(()) => flips += 1,
                Err(_) => {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if let Some(d) = o.pause {
                std::thread::sleep(d);
            }
            if (flips + errors) % 64 == 0 && o.stop.now() {
                break 'outer;
            }
        }
    }
    println!("flips={flips} errors={errors}");
    Ok(())
}
