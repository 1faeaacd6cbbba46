//! A small stored-only (no compression) ZIP reader and writer with ZIP64 support.
//!
//! Why not the `zip` crate: a TDF writer must stream the payload entry of unknown length into a
//! plain `Write` (no `Seek`) with bounded memory, and the reader must check the container layout
//! strictly (entry bounds, overlaps, sizes) against hostile input. Stored entries make both a
//! few hundred lines, so we own them. Format: PKWARE APPNOTE 6.3.x, sections 4.3 and 4.5.3.

use std::io::{self, Read, Seek, SeekFrom, Write};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const DATA_DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const FLAG_DATA_DESCRIPTOR: u16 = 0x0008;
const METHOD_STORED: u16 = 0;
const VERSION_STORED: u16 = 20;
const VERSION_ZIP64: u16 = 45;
const U32_MARK: u64 = 0xFFFF_FFFF;
const U16_MARK: u64 = 0xFFFF;
/// The EOCD record is 22 bytes plus a comment of at most 65,535 bytes.
const EOCD_LEN: u64 = 22;
const MAX_EOCD_SEARCH: u64 = EOCD_LEN + 0xFFFF;
/// A TDF has two entries; a directory far larger than that is hostile, not a TDF.
const MAX_ENTRIES: u64 = 1024;
const MAX_CENTRAL_DIRECTORY: u64 = 1 << 20;

/// What is wrong with a container, precisely enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("I/O error while reading the ZIP container: {0}")]
    Io(#[from] io::Error),
    #[error("not a ZIP archive: no end-of-central-directory record found")]
    NoEndOfCentralDirectory,
    #[error("ZIP archive is malformed: {0}")]
    Malformed(String),
    #[error(
        "ZIP entry {name:?} uses compression method {method}; TDF entries must be stored (method 0)"
    )]
    Compressed { name: String, method: u16 },
    #[error("multi-disk ZIP archives are not supported")]
    MultiDisk,
}

fn malformed(msg: impl Into<String>) -> ZipError {
    ZipError::Malformed(msg.into())
}

/// One stored entry as located by the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Offset of the local file header.
    pub header_offset: u64,
    /// Offset of the first data byte (after the local header).
    pub data_offset: u64,
    pub size: u64,
    pub crc32: u32,
}

/// The central directory of an archive, validated for layout.
#[derive(Debug, Clone)]
pub struct Directory {
    pub entries: Vec<Entry>,
    pub archive_len: u64,
    pub central_directory_offset: u64,
    pub zip64: bool,
}

impl Directory {
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn read_exact_at<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> Result<Vec<u8>, ZipError> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            malformed(format!(
                "structure at offset {offset} runs past the end of the file"
            ))
        } else {
            ZipError::Io(e)
        }
    })?;
    Ok(buf)
}

/// Read and validate the central directory: every entry must be a stored, single-disk entry whose
/// local header agrees with the directory and whose data lies inside the file, before the
/// directory, without overlapping another entry.
pub fn read_directory<R: Read + Seek>(r: &mut R) -> Result<Directory, ZipError> {
    let archive_len = r.seek(SeekFrom::End(0))?;
    if archive_len < EOCD_LEN {
        return Err(ZipError::NoEndOfCentralDirectory);
    }
    let search = archive_len.min(MAX_EOCD_SEARCH);
    let tail_start = archive_len - search;
    let tail = read_exact_at(r, tail_start, search as usize)?;
    let eocd_pos = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| {
            le32(&tail, i) == EOCD_SIG
                && i + EOCD_LEN as usize + le16(&tail, i + 20) as usize == tail.len()
        })
        .ok_or(ZipError::NoEndOfCentralDirectory)?;
    let eocd = &tail[eocd_pos..];
    let eocd_offset = tail_start + eocd_pos as u64;
    if le16(eocd, 4) != 0 || le16(eocd, 6) != 0 {
        return Err(ZipError::MultiDisk);
    }
    let mut count = u64::from(le16(eocd, 10));
    let mut cd_size = u64::from(le32(eocd, 12));
    let mut cd_offset = u64::from(le32(eocd, 16));
    if le16(eocd, 8) != le16(eocd, 10) {
        return Err(ZipError::MultiDisk);
    }
    let mut zip64 = false;
    let mut directory_end = eocd_offset;
    if count == U16_MARK || cd_size == U32_MARK || cd_offset == U32_MARK {
        zip64 = true;
        if eocd_offset < 20 {
            return Err(malformed("ZIP64 markers present but no ZIP64 locator"));
        }
        let loc = read_exact_at(r, eocd_offset - 20, 20)?;
        if le32(&loc, 0) != ZIP64_LOCATOR_SIG {
            return Err(malformed(
                "ZIP64 markers present but no ZIP64 end-of-central-directory locator",
            ));
        }
        if le32(&loc, 4) != 0 || le32(&loc, 16) > 1 {
            return Err(ZipError::MultiDisk);
        }
        let z_off = le64(&loc, 8);
        if z_off
            .checked_add(56)
            .is_none_or(|end| end > eocd_offset - 20)
        {
            return Err(malformed(
                "ZIP64 end-of-central-directory record offset is out of range",
            ));
        }
        let z = read_exact_at(r, z_off, 56)?;
        if le32(&z, 0) != ZIP64_EOCD_SIG {
            return Err(malformed("bad ZIP64 end-of-central-directory signature"));
        }
        if le32(&z, 16) != 0 || le32(&z, 20) != 0 || le64(&z, 24) != le64(&z, 32) {
            return Err(ZipError::MultiDisk);
        }
        count = le64(&z, 32);
        cd_size = le64(&z, 40);
        cd_offset = le64(&z, 48);
        directory_end = z_off;
    }
    if count > MAX_ENTRIES {
        return Err(malformed(format!(
            "central directory claims {count} entries (limit {MAX_ENTRIES})"
        )));
    }
    if cd_size > MAX_CENTRAL_DIRECTORY {
        return Err(malformed(format!(
            "central directory of {cd_size} bytes is too large"
        )));
    }
    if cd_offset.checked_add(cd_size) != Some(directory_end) {
        return Err(malformed(format!(
            "central directory (offset {cd_offset}, {cd_size} bytes) does not end where the end record starts ({directory_end})"
        )));
    }
    let cd = read_exact_at(r, cd_offset, cd_size as usize)?;
    let mut entries = Vec::with_capacity(count as usize);
    let mut pos = 0usize;
    for index in 0..count {
        let (entry, next) = parse_central_entry(&cd, pos, index)?;
        pos = next;
        entries.push(entry);
    }
    if pos != cd.len() {
        return Err(malformed(
            "central directory has trailing bytes after its last entry",
        ));
    }
    for e in &mut entries {
        locate_data(r, e, cd_offset)?;
    }
    check_no_overlap(&entries)?;
    Ok(Directory {
        entries,
        archive_len,
        central_directory_offset: cd_offset,
        zip64,
    })
}

fn parse_central_entry(cd: &[u8], pos: usize, index: u64) -> Result<(Entry, usize), ZipError> {
    if pos + 46 > cd.len() || le32(cd, pos) != CENTRAL_SIG {
        return Err(malformed(format!(
            "central directory entry {index} is truncated or has a bad signature"
        )));
    }
    let method = le16(cd, pos + 10);
    let crc32 = le32(cd, pos + 16);
    let mut csize = u64::from(le32(cd, pos + 20));
    let mut usize_ = u64::from(le32(cd, pos + 24));
    let name_len = le16(cd, pos + 28) as usize;
    let extra_len = le16(cd, pos + 30) as usize;
    let comment_len = le16(cd, pos + 32) as usize;
    let disk = le16(cd, pos + 34);
    let mut offset = u64::from(le32(cd, pos + 42));
    let end = pos + 46 + name_len + extra_len + comment_len;
    if end > cd.len() {
        return Err(malformed(format!(
            "central directory entry {index} runs past the directory"
        )));
    }
    let name = std::str::from_utf8(&cd[pos + 46..pos + 46 + name_len])
        .map_err(|_| {
            malformed(format!(
                "central directory entry {index} has a non-UTF-8 name"
            ))
        })?
        .to_string();
    let extra = &cd[pos + 46 + name_len..pos + 46 + name_len + extra_len];
    // ZIP64 extra: only the fields whose 32-bit slot is saturated appear, in this order.
    if usize_ == U32_MARK || csize == U32_MARK || offset == U32_MARK || disk == 0xFFFF {
        let z = find_extra(extra, ZIP64_EXTRA_ID).ok_or_else(|| {
            malformed(format!(
                "entry {name:?} has ZIP64 markers but no ZIP64 extra field"
            ))
        })?;
        let mut at = 0usize;
        let mut take = |slot: &mut u64| -> Result<(), ZipError> {
            if *slot == U32_MARK {
                if at + 8 > z.len() {
                    return Err(malformed(format!(
                        "entry {name:?} has a short ZIP64 extra field"
                    )));
                }
                *slot = le64(z, at);
                at += 8;
            }
            Ok(())
        };
        take(&mut usize_)?;
        take(&mut csize)?;
        take(&mut offset)?;
    } else if disk != 0 {
        return Err(ZipError::MultiDisk);
    }
    if method != METHOD_STORED {
        return Err(ZipError::Compressed { name, method });
    }
    if csize != usize_ {
        return Err(malformed(format!(
            "stored entry {name:?} has compressed size {csize} but uncompressed size {usize_}"
        )));
    }
    Ok((
        Entry {
            name,
            header_offset: offset,
            data_offset: 0,
            size: usize_,
            crc32,
        },
        end,
    ))
}

fn find_extra(mut extra: &[u8], id: u16) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let tag = le16(extra, 0);
        let len = le16(extra, 2) as usize;
        if 4 + len > extra.len() {
            return None;
        }
        if tag == id {
            return Some(&extra[4..4 + len]);
        }
        extra = &extra[4 + len..];
    }
    None
}

fn locate_data<R: Read + Seek>(r: &mut R, e: &mut Entry, cd_offset: u64) -> Result<(), ZipError> {
    if e.header_offset
        .checked_add(30)
        .is_none_or(|end| end > cd_offset)
    {
        return Err(malformed(format!(
            "local header of {:?} lies outside the file data",
            e.name
        )));
    }
    let h = read_exact_at(r, e.header_offset, 30)?;
    if le32(&h, 0) != LOCAL_SIG {
        return Err(malformed(format!(
            "local header of {:?} has a bad signature",
            e.name
        )));
    }
    let method = le16(&h, 8);
    if method != METHOD_STORED {
        return Err(ZipError::Compressed {
            name: e.name.clone(),
            method,
        });
    }
    let name_len = u64::from(le16(&h, 26));
    let extra_len = u64::from(le16(&h, 28));
    let name = read_exact_at(r, e.header_offset + 30, name_len as usize)?;
    if name != e.name.as_bytes() {
        return Err(malformed(format!(
            "local header name {:?} differs from central directory name {:?}",
            String::from_utf8_lossy(&name),
            e.name
        )));
    }
    e.data_offset = e.header_offset + 30 + name_len + extra_len;
    if e.data_offset
        .checked_add(e.size)
        .is_none_or(|end| end > cd_offset)
    {
        return Err(malformed(format!(
            "data of {:?} ({} bytes at offset {}) runs into the central directory",
            e.name, e.size, e.data_offset
        )));
    }
    Ok(())
}

fn check_no_overlap(entries: &[Entry]) -> Result<(), ZipError> {
    let mut spans: Vec<(u64, u64, &str)> = entries
        .iter()
        .map(|e| (e.header_offset, e.data_offset + e.size, e.name.as_str()))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(malformed(format!(
                "entries {:?} and {:?} overlap",
                w[0].2, w[1].2
            )));
        }
    }
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(malformed(format!("entry {:?} appears twice", w[0])));
    }
    Ok(())
}

/// A `Write` adapter that counts bytes, so the writer knows offsets without `Seek`.
pub struct CountingWriter<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, written: 0 }
    }
    pub fn written(&self) -> u64 {
        self.written
    }
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Written {
    name: String,
    offset: u64,
    size: u64,
    crc32: u32,
    flags: u16,
}

/// Streaming writer for stored entries. Entries whose length is unknown up front are written
/// with a data descriptor (flag bit 3); ZIP64 structures are emitted only where a value needs them.
pub struct StoredZipWriter<W: Write> {
    out: CountingWriter<W>,
    done: Vec<Written>,
    dos_time: u16,
    dos_date: u16,
    force_zip64: bool,
}

/// An entry being streamed; finish it with [`StoredZipWriter::end_streamed`].
pub struct StreamedEntry {
    name: String,
    offset: u64,
    data_start: u64,
    crc: crc32fast::Hasher,
    zip64_local: bool,
}

impl StreamedEntry {
    /// Account for data written to the archive for this entry (for its CRC).
    pub fn update(&mut self, data: &[u8]) {
        self.crc.update(data);
    }
}

impl<W: Write> StoredZipWriter<W> {
    pub fn new(out: W) -> Self {
        let (dos_time, dos_date) = dos_now();
        StoredZipWriter {
            out: CountingWriter::new(out),
            done: Vec::new(),
            dos_time,
            dos_date,
            force_zip64: false,
        }
    }

    /// Emit ZIP64 structures even for small archives (tests of the ZIP64 path).
    #[doc(hidden)]
    pub fn force_zip64(mut self) -> Self {
        self.force_zip64 = true;
        self
    }

    /// Direct access to the archive stream, for writing an entry's data.
    pub fn data_writer(&mut self) -> &mut CountingWriter<W> {
        &mut self.out
    }

    fn local_header(
        &mut self,
        name: &str,
        flags: u16,
        crc: u32,
        size32: u32,
        extra: &[u8],
    ) -> io::Result<()> {
        let version = if extra.is_empty() {
            VERSION_STORED
        } else {
            VERSION_ZIP64
        };
        let mut h = Vec::with_capacity(30 + name.len() + extra.len());
        h.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&METHOD_STORED.to_le_bytes());
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(extra);
        self.out.write_all(&h)
    }

    /// Start an entry whose length and CRC are known only at the end. `maybe_large` selects ZIP64
    /// sizes in the local header and descriptor (required if the entry may reach 4 GiB).
    pub fn begin_streamed(&mut self, name: &str, maybe_large: bool) -> io::Result<StreamedEntry> {
        let offset = self.out.written();
        let zip64_local = maybe_large || self.force_zip64;
        if zip64_local {
            let mut extra = Vec::with_capacity(20);
            extra.extend_from_slice(&ZIP64_EXTRA_ID.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&[0u8; 16]);
            self.local_header(name, FLAG_DATA_DESCRIPTOR, 0, U32_MARK as u32, &extra)?;
        } else {
            self.local_header(name, FLAG_DATA_DESCRIPTOR, 0, 0, &[])?;
        }
        Ok(StreamedEntry {
            name: name.to_string(),
            offset,
            data_start: self.out.written(),
            crc: crc32fast::Hasher::new(),
            zip64_local,
        })
    }

    /// Finish a streamed entry: write its data descriptor.
    pub fn end_streamed(&mut self, entry: StreamedEntry) -> io::Result<()> {
        let size = self.out.written() - entry.data_start;
        if !entry.zip64_local && size >= U32_MARK {
            return Err(io::Error::other(format!(
                "entry {:?} reached {size} bytes but was started without ZIP64 sizes",
                entry.name
            )));
        }
        let crc32 = entry.crc.finalize();
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&DATA_DESCRIPTOR_SIG.to_le_bytes());
        d.extend_from_slice(&crc32.to_le_bytes());
        if entry.zip64_local {
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&size.to_le_bytes());
        } else {
            d.extend_from_slice(&(size as u32).to_le_bytes());
            d.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.out.write_all(&d)?;
        self.done.push(Written {
            name: entry.name,
            offset: entry.offset,
            size,
            crc32,
            flags: FLAG_DATA_DESCRIPTOR,
        });
        Ok(())
    }

    /// Write a small entry held in memory.
    pub fn add_entry(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 >= U32_MARK {
            return Err(io::Error::other(
                "in-memory entries must be smaller than 4 GiB",
            ));
        }
        let offset = self.out.written();
        let crc32 = crc32fast::hash(data);
        self.local_header(name, 0, crc32, data.len() as u32, &[])?;
        self.out.write_all(data)?;
        self.done.push(Written {
            name: name.to_string(),
            offset,
            size: data.len() as u64,
            crc32,
            flags: 0,
        });
        Ok(())
    }

    /// Write the central directory and end records; returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_offset = self.out.written();
        let mut cd = Vec::new();
        for w in &self.done {
            let big_size = w.size >= U32_MARK || self.force_zip64;
            let big_off = w.offset >= U32_MARK || self.force_zip64;
            let mut extra = Vec::new();
            if big_size || big_off {
                let mut body = Vec::new();
                if big_size {
                    body.extend_from_slice(&w.size.to_le_bytes());
                    body.extend_from_slice(&w.size.to_le_bytes());
                }
                if big_off {
                    body.extend_from_slice(&w.offset.to_le_bytes());
                }
                extra.extend_from_slice(&ZIP64_EXTRA_ID.to_le_bytes());
                extra.extend_from_slice(&(body.len() as u16).to_le_bytes());
                extra.extend_from_slice(&body);
            }
            let version = if extra.is_empty() {
                VERSION_STORED
            } else {
                VERSION_ZIP64
            };
            let size32 = if big_size {
                U32_MARK as u32
            } else {
                w.size as u32
            };
            let off32 = if big_off {
                U32_MARK as u32
            } else {
                w.offset as u32
            };
            cd.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            cd.extend_from_slice(&version.to_le_bytes()); // made by (MS-DOS attributes)
            cd.extend_from_slice(&version.to_le_bytes()); // needed to extract
            cd.extend_from_slice(&w.flags.to_le_bytes());
            cd.extend_from_slice(&METHOD_STORED.to_le_bytes());
            cd.extend_from_slice(&self.dos_time.to_le_bytes());
            cd.extend_from_slice(&self.dos_date.to_le_bytes());
            cd.extend_from_slice(&w.crc32.to_le_bytes());
            cd.extend_from_slice(&size32.to_le_bytes());
            cd.extend_from_slice(&size32.to_le_bytes());
            cd.extend_from_slice(&(w.name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes()); // comment
            cd.extend_from_slice(&0u16.to_le_bytes()); // disk
            cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            cd.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            cd.extend_from_slice(&off32.to_le_bytes());
            cd.extend_from_slice(w.name.as_bytes());
            cd.extend_from_slice(&extra);
        }
        self.out.write_all(&cd)?;
        let cd_size = cd.len() as u64;
        let count = self.done.len() as u64;
        let needs_zip64 =
            self.force_zip64 || cd_offset >= U32_MARK || cd_size >= U32_MARK || count >= U16_MARK;
        let mut tail = Vec::new();
        if needs_zip64 {
            let z_off = self.out.written();
            tail.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
            tail.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of this record
            tail.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            tail.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&cd_size.to_le_bytes());
            tail.extend_from_slice(&cd_offset.to_le_bytes());
            tail.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&z_off.to_le_bytes());
            tail.extend_from_slice(&1u32.to_le_bytes());
        }
        let c16 = if needs_zip64 {
            U16_MARK as u16
        } else {
            count as u16
        };
        let s32 = if needs_zip64 {
            U32_MARK as u32
        } else {
            cd_size as u32
        };
        let o32 = if needs_zip64 {
            U32_MARK as u32
        } else {
            cd_offset as u32
        };
        tail.extend_from_slice(&EOCD_SIG.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&c16.to_le_bytes());
        tail.extend_from_slice(&c16.to_le_bytes());
        tail.extend_from_slice(&s32.to_le_bytes());
        tail.extend_from_slice(&o32.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&tail)?;
        self.out.flush()?;
        Ok(self.out.into_inner())
    }
}

/// Current UTC time as MS-DOS time and date fields.
fn dos_now() -> (u16, u16) {
    let now = time::OffsetDateTime::now_utc();
    let year = now.year().clamp(1980, 2107) as u16;
    let time = (u16::from(now.hour()) << 11)
        | (u16::from(now.minute()) << 5)
        | (u16::from(now.second()) / 2);
    let date = ((year - 1980) << 9) | ((now.month() as u16) << 5) | u16::from(now.day());
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn build(force64: bool, payload: &[u8], manifest: &[u8]) -> Vec<u8> {
        let mut w = StoredZipWriter::new(Vec::new());
        if force64 {
            w = w.force_zip64();
        }
        let mut e = w.begin_streamed("0.payload", false).unwrap();
        w.data_writer().write_all(payload).unwrap();
        e.update(payload);
        w.end_streamed(e).unwrap();
        w.add_entry("0.manifest.json", manifest).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_plain_and_zip64() {
        for force in [false, true] {
            let bytes = build(force, b"payload-bytes", b"{\"a\":1}");
            let dir = read_directory(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(dir.zip64, force);
            assert_eq!(dir.entries.len(), 2);
            let p = dir.entry("0.payload").unwrap();
            assert_eq!(
                &bytes[p.data_offset as usize..(p.data_offset + p.size) as usize],
                b"payload-bytes"
            );
            assert_eq!(p.crc32, crc32fast::hash(b"payload-bytes"));
            let m = dir.entry("0.manifest.json").unwrap();
            assert_eq!(
                &bytes[m.data_offset as usize..(m.data_offset + m.size) as usize],
                b"{\"a\":1}"
            );
            assert!(p.header_offset < m.header_offset, "payload must come first");
        }
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(
            read_directory(&mut Cursor::new(b"hello")),
            Err(ZipError::NoEndOfCentralDirectory)
        ));
        let bytes = build(false, b"abc", b"{}");
        for cut in 1..bytes.len() {
            assert!(
                read_directory(&mut Cursor::new(&bytes[..bytes.len() - cut])).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn rejects_entry_running_into_directory() {
        let mut bytes = build(false, b"abc", b"{}");
        let dir = read_directory(&mut Cursor::new(&bytes)).unwrap();
        // Central directory entry 0 compressed+uncompressed sizes at +20/+24.
        let cd = dir.central_directory_offset as usize;
        bytes[cd + 20..cd + 24].copy_from_slice(&1000u32.to_le_bytes());
        bytes[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
        let err = read_directory(&mut Cursor::new(&bytes)).unwrap_err();
        assert!(
            err.to_string().contains("runs into the central directory"),
            "{err}"
        );
    }
}
