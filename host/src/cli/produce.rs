//! `ackbar produce`: send messages to a topic and print where the broker put them. A full local
//! queue waits; the first record the broker refuses ends it with an error naming the record and
//! the count delivered before it.

use crate::kafka::{self, Record};
use anyhow::Result;
use std::io::{BufRead, Write};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap servers, e.g. 127.0.0.1:9092.
    #[arg(long)]
    pub brokers: String,
    #[arg(long)]
    pub topic: String,
    /// Send every message to this partition (default: the partitioner decides by key).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Message key.
    #[arg(long)]
    pub key: Option<String>,
    /// A header on every message, as NAME=VALUE; repeat for more (kept in order), e.g.
    /// `-H traceparent=00-<trace id>-<span id>-01` to produce a traced record.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    pub payloads: Vec<String>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

pub async fn run(args: ProduceArgs) -> Result<()> {
    let ProduceArgs {
        brokers,
        topic,
        partition,
        key,
        headers,
        payloads,
    } = args;
    let headers: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let payloads = if payloads.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()?
    } else {
        payloads
    };
    let records: Vec<Record> = payloads
        .into_iter()
        .map(|p| Record {
            partition,
            key: key.clone().map(String::into_bytes),
            payload: p.into_bytes(),
            headers: headers.clone(),
        })
        .collect();
    let offsets = kafka::produce(&brokers, &topic, &records).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (partition, offset) in &offsets {
        writeln!(out, "{topic}/{partition} @{offset}")?;
    }
    out.flush()?;
    eprintln!(
        "{} of {} records delivered to {topic}",
        offsets.len(),
        records.len()
    );
    Ok(())
}
