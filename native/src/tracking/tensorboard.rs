//! TensorBoard event files (`events.out.tfevents.*`): `Event` protocol buffers (encoded by
//! prost) in TFRecord framing, as TensorFlow's and PyTorch's `SummaryWriter` write them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message;

/// `tensorflow.Event`, the fields a scalar and image log uses.
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 6")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "6")]
    SessionLog(SessionLog),
}

/// `tensorflow.SessionLog`: a START tells readers that a restarted run rewrites the steps
/// from this event's on (TensorBoard drops the earlier events of those steps).
#[derive(Clone, PartialEq, Message)]
struct SessionLog {
    /// 1: START.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Kind", tags = "2, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorflow.Summary.Image`: an encoded PNG with its size.
#[derive(Clone, PartialEq, Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    /// 4: RGBA.
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

/// One event file of a run; a resumed run adds a new file beside the old ones (TensorBoard
/// reads a directory's files as one stream and drops events a restart repeats).
pub struct EventFile {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventFile {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && !h.contains(['/', '\\']))
            .unwrap_or_else(|| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{now:010}.{host}.{}",
            std::process::id()
        ));
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut events = Self {
            path,
            file: BufWriter::new(file),
        };
        events.write(0, What::FileVersion("brain.Event:2".into()))?;
        Ok(events)
    }

    /// Scalars at `step` (`tag`, value), one event.
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> anyhow::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                kind: Some(Kind::SimpleValue(*v as f32)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// The run restarts at `step` (a resume): earlier events of `step` and later are void.
    pub fn restart(&mut self, step: i64) -> anyhow::Result<()> {
        self.write(step, What::SessionLog(SessionLog { status: 1 }))
    }

    /// A PNG image under `tag` (TensorBoard's Images tab); not a PNG is an error.
    pub fn png(&mut self, step: i64, tag: &str, png: &[u8]) -> anyhow::Result<()> {
        let (width, height) = png_size(png).with_context(|| format!("{tag}: not a PNG"))?;
        let image = Image {
            height,
            width,
            colorspace: 4,
            encoded_image_string: png.to_vec(),
        };
        let value = vec![SummaryValue {
            tag: tag.into(),
            kind: Some(Kind::Image(image)),
        }];
        self.write(step, What::Summary(Summary { value }))
    }

    fn write(&mut self, step: i64, what: What) -> anyhow::Result<()> {
        let wall_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let event = Event {
            wall_time,
            step,
            what: Some(what),
        };
        self.file
            .write_all(&tf_record(&event.encode_to_vec()))
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// A TFRecord: length (u64 LE), its masked CRC-32C, the data, the data's masked CRC-32C.
fn tf_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(i32, i32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| i32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((be(16), be(20)))
}
