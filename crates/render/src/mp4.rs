//! A minimal MP4 writer for one H.264 video track: ftyp, then moov (so players can
//! start before the whole file arrives: "faststart"), then mdat. Samples are
//! length-prefixed NAL units; SPS and PPS go into the avcC box.

use std::io::Write;

/// One encoded frame: its AVCC bytes (4-byte lengths) and whether it is a sync frame.
pub struct Sample {
    pub size: u32,
    pub sync: bool,
}

pub struct TrackInfo<'a> {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub sps: &'a [u8],
    pub pps: &'a [u8],
}

/// Media timescale: 24 fps gives a whole number of ticks per frame.
const TIMESCALE: u32 = 24_000;

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 4);
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn moov(info: &TrackInfo<'_>, samples: &[Sample], mdat_data_offset: u32) -> Vec<u8> {
    let n = samples.len() as u32;
    let delta = TIMESCALE / info.fps.max(1);
    let media_duration = n * delta;
    let movie_duration = (u64::from(media_duration) * 1000 / u64::from(TIMESCALE)) as u32;

    let mut mvhd = u32s(&[0, 0, 1000, movie_duration, 0x0001_0000]);
    mvhd.extend_from_slice(&[0x01, 0x00, 0, 0]);
    mvhd.extend_from_slice(&[0; 8]);
    mvhd.extend_from_slice(&u32s(&MATRIX));
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes());
    let mvhd = full(b"mvhd", 0, 0, &mvhd);

    let mut tkhd = u32s(&[0, 0, 1, 0, movie_duration, 0, 0]);
    tkhd.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    tkhd.extend_from_slice(&u32s(&MATRIX));
    tkhd.extend_from_slice(&u32s(&[info.width << 16, info.height << 16]));
    let tkhd = full(b"tkhd", 0, 3, &tkhd);

    let mut mdhd = u32s(&[0, 0, TIMESCALE, media_duration]);
    mdhd.extend_from_slice(&[0x55, 0xc4, 0, 0]); // language "und"
    let mdhd = full(b"mdhd", 0, 0, &mdhd);
    let mut hdlr = u32s(&[0]);
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"VideoHandler\0");
    let hdlr = full(b"hdlr", 0, 0, &hdlr);

    let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
    let dref = full(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &full(b"url ", 0, 1, &[])].concat());
    let dinf = bx(b"dinf", &dref);

    let mut avcc = vec![
        1,
        *info.sps.get(1).unwrap_or(&66),
        *info.sps.get(2).unwrap_or(&0),
        *info.sps.get(3).unwrap_or(&31),
        0xFF,
        0xE1,
    ];
    avcc.extend_from_slice(&(info.sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(info.sps);
    avcc.push(1);
    avcc.extend_from_slice(&(info.pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(info.pps);
    let avcc = bx(b"avcC", &avcc);
    let mut avc1 = vec![0; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&(info.width as u16).to_be_bytes());
    avc1.extend_from_slice(&(info.height as u16).to_be_bytes());
    avc1.extend_from_slice(&u32s(&[0x0048_0000, 0x0048_0000, 0]));
    avc1.extend_from_slice(&1u16.to_be_bytes()); // frame count
    avc1.extend_from_slice(&[0; 32]); // compressor name
    avc1.extend_from_slice(&0x18u16.to_be_bytes());
    avc1.extend_from_slice(&0xFFFFu16.to_be_bytes());
    avc1.extend_from_slice(&avcc);
    let avc1 = bx(b"avc1", &avc1);
    let stsd = full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &avc1].concat());
    let stts = full(b"stts", 0, 0, &u32s(&[1, n, delta]));
    let sync: Vec<u32> = samples.iter().enumerate().filter(|(_, s)| s.sync).map(|(i, _)| i as u32 + 1).collect();
    let stss = full(b"stss", 0, 0, &[&(sync.len() as u32).to_be_bytes()[..], &u32s(&sync)].concat());
    let stsc = full(b"stsc", 0, 0, &u32s(&[1, 1, n, 1]));
    let sizes: Vec<u32> = samples.iter().map(|s| s.size).collect();
    let stsz = full(b"stsz", 0, 0, &[&u32s(&[0, n])[..], &u32s(&sizes)].concat());
    let stco = full(b"stco", 0, 0, &u32s(&[1, mdat_data_offset]));
    let stbl = bx(b"stbl", &[stsd, stts, stss, stsc, stsz, stco].concat());
    let minf = bx(b"minf", &[vmhd, dinf, stbl].concat());
    let mdia = bx(b"mdia", &[mdhd, hdlr, minf].concat());
    let trak = bx(b"trak", &[tkhd, mdia].concat());
    bx(b"moov", &[mvhd, trak].concat())
}

fn ftyp() -> Vec<u8> {
    bx(b"ftyp", &[&b"isom"[..], &512u32.to_be_bytes(), b"isomiso2avc1mp41"].concat())
}

/// Writes the whole file: `data` is the concatenation of all samples in order.
pub fn write_mp4(out: &mut dyn Write, info: &TrackInfo<'_>, samples: &[Sample], data: &[u8]) -> std::io::Result<u64> {
    let ftyp = ftyp();
    // The chunk offset depends on the moov's size, which does not depend on the
    // offset's value: measure once, then write for real.
    let probe = moov(info, samples, 0);
    let offset = (ftyp.len() + probe.len() + 8) as u32;
    let moov = moov(info, samples, offset);
    out.write_all(&ftyp)?;
    out.write_all(&moov)?;
    out.write_all(&((data.len() + 8) as u32).to_be_bytes())?;
    out.write_all(b"mdat")?;
    out.write_all(data)?;
    Ok((ftyp.len() + moov.len() + 8 + data.len()) as u64)
}
