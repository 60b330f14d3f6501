//! H.264 facts from an MP4 track's `avcC`: profile, level and the sequence
//! parameters that decide whether openh264 can decode it (chroma format, bit
//! depth, interlacing), plus the conversion of length-prefixed samples to the
//! Annex B byte stream the decoder reads. All parsing is bounds-checked.

use crate::probe::{ProbeError, Unsupported, be16};

/// The most macroblocks in a picture openh264 decodes (level 5.2's frame
/// size limit, which its decoder enforces for every level).
pub const MAX_MACROBLOCKS: u32 = 36_864;

/// What an H.264 track's configuration says about its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Info {
    /// 66 Baseline, 77 Main, 88 Extended, 100 High, 110 High 10, 122 High
    /// 4:2:2, 244 High 4:4:4...
    pub profile_idc: u8,
    /// The constraint_set0..5 flags, as the byte after profile_idc.
    pub constraint_flags: u8,
    /// Ten times the level: 31 is level 3.1.
    pub level_idc: u8,
    /// Bytes before each NAL unit in a sample (1, 2 or 4).
    pub nal_length_size: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// `frame_mbs_only_flag`: false for interlaced (field or MBAFF) coding.
    pub progressive: bool,
    /// The first PPS's entropy coder: CABAC (true) or CAVLC (false).
    pub cabac: Option<bool>,
    /// Whether the configuration carries an SPS; `avc3` tracks may send it in
    /// band only, and then the fields above are the profile's defaults.
    pub sps_in_config: bool,
    /// The SPS's picture size after cropping (0 without an SPS).
    pub width: u32,
    pub height: u32,
}

impl H264Info {
    /// "Constrained Baseline", "Main", "High", "High 10"...
    pub fn profile_name(&self) -> String {
        let set = |n: u8| self.constraint_flags & (0x80 >> n) != 0;
        match self.profile_idc {
            66 if set(1) => "Constrained Baseline".to_owned(),
            66 => "Baseline".to_owned(),
            77 => "Main".to_owned(),
            88 => "Extended".to_owned(),
            100 => "High".to_owned(),
            110 if set(3) => "High 10 Intra".to_owned(),
            110 => "High 10".to_owned(),
            122 => "High 4:2:2".to_owned(),
            244 => "High 4:4:4 Predictive".to_owned(),
            44 => "CAVLC 4:4:4 Intra".to_owned(),
            83 => "Scalable Baseline".to_owned(),
            86 => "Scalable High".to_owned(),
            118 => "Multiview High".to_owned(),
            128 => "Stereo High".to_owned(),
            p => format!("profile_idc {p}"),
        }
    }

    /// "3.1", "4", "1b".
    pub fn level(&self) -> String {
        if self.level_idc == 11 && self.profile_idc == 66 && self.constraint_flags & 0x10 != 0 {
            return "1b".to_owned();
        }
        match self.level_idc % 10 {
            0 => format!("{}", self.level_idc / 10),
            r => format!("{}.{r}", self.level_idc / 10),
        }
    }

    /// Whether openh264's decoder reads this stream: progressive 8-bit 4:2:0
    /// in the Baseline, Main or High profile (CAVLC or CABAC, with or without
    /// B-frames) up to 36864 macroblocks a picture.
    pub fn check_decodable(&self) -> Result<(), Unsupported> {
        let codec = format!("H.264 {} (profile_idc {}, level {})", self.profile_name(), self.profile_idc, self.level());
        let refuse = |detail: &str| Err(Unsupported { codec: codec.clone(), detail: detail.to_owned() });
        if self.bit_depth_luma != 8 || self.bit_depth_chroma != 8 {
            return refuse("only 8-bit video is decoded");
        }
        if self.chroma_format_idc != 1 {
            return refuse("only 4:2:0 chroma is decoded");
        }
        if !self.progressive {
            return refuse("interlaced (field or MBAFF) coding is not decoded");
        }
        if !matches!(self.profile_idc, 66 | 77 | 100) {
            return refuse("only the Baseline, Main and High profiles are decoded");
        }
        let mbs = u64::from(self.width.div_ceil(16)) * u64::from(self.height.div_ceil(16));
        if mbs > u64::from(MAX_MACROBLOCKS) {
            return refuse("pictures over 36864 macroblocks (e.g. 4096x2304) are not decoded");
        }
        Ok(())
    }
}

/// The parameter sets an `avcC` carries, for the decoder.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParamSets {
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

fn bad(msg: &str) -> ProbeError {
    ProbeError::Corrupt(format!("the H.264 configuration is corrupt: {msg}"))
}

/// Reads an `avcC` body: the stream's facts and its parameter sets.
pub(crate) fn parse_avcc_sets(avcc: &[u8]) -> Result<(H264Info, ParamSets), ProbeError> {
    if avcc.len() < 7 {
        return Err(bad("avcC is cut short"));
    }
    let nal_length_size = (avcc[4] & 3) + 1;
    if nal_length_size == 3 {
        return Err(bad("3-byte NAL lengths"));
    }
    let mut sets = ParamSets::default();
    let mut at = 5usize;
    let read_sets = |count: usize, at: &mut usize, into: &mut Vec<Vec<u8>>| -> Result<(), ProbeError> {
        for _ in 0..count {
            let len = usize::from(be16(avcc, *at).ok_or_else(|| bad("a parameter set is cut short"))?);
            let set = avcc.get(*at + 2..*at + 2 + len).ok_or_else(|| bad("a parameter set is cut short"))?;
            if !set.is_empty() {
                into.push(set.to_vec());
            }
            *at += 2 + len;
        }
        Ok(())
    };
    let sps_count = usize::from(avcc[at] & 0x1f);
    at += 1;
    read_sets(sps_count, &mut at, &mut sets.sps)?;
    // Some writers stop after the SPS when there is no PPS to list.
    if let Some(&n) = avcc.get(at) {
        at += 1;
        read_sets(usize::from(n), &mut at, &mut sets.pps)?;
    }
    let mut info = H264Info {
        profile_idc: avcc[1],
        constraint_flags: avcc[2],
        level_idc: avcc[3],
        nal_length_size,
        chroma_format_idc: 1,
        bit_depth_luma: 8,
        bit_depth_chroma: 8,
        progressive: true,
        cabac: None,
        sps_in_config: false,
        width: 0,
        height: 0,
    };
    if let Some(sps) = sets.sps.first() {
        parse_sps(sps, &mut info)?;
        info.sps_in_config = true;
    }
    if let Some(pps) = sets.pps.first() {
        info.cabac = pps_cabac(pps);
    }
    Ok((info, sets))
}

/// Reads an `avcC` body's facts.
pub(crate) fn parse_avcc(avcc: &[u8]) -> Result<H264Info, ProbeError> {
    parse_avcc_sets(avcc).map(|(info, _)| info)
}

/// A NAL unit's payload with the emulation prevention bytes (00 00 03) removed.
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.iter().skip(1) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An Exp-Golomb bit reader that fails rather than reading past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, ProbeError> {
        let byte = self.data.get(self.pos / 8).ok_or_else(|| bad("the SPS is cut short"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, ProbeError> {
        (0..n).try_fold(0, |acc, _| Ok((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Result<u32, ProbeError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(bad("an Exp-Golomb code is too long"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)).min(u64::from(u32::MAX)) as u32)
    }

    fn se(&mut self) -> Result<i64, ProbeError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Fills `info` from an SPS NAL unit (header byte included).
fn parse_sps(nal: &[u8], info: &mut H264Info) -> Result<(), ProbeError> {
    let data = rbsp(nal);
    let mut b = Bits { data: &data, pos: 0 };
    let profile = b.bits(8)? as u8;
    info.profile_idc = profile;
    info.constraint_flags = b.bits(8)? as u8;
    info.level_idc = b.bits(8)? as u8;
    b.ue()?; // seq_parameter_set_id
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        let chroma = b.ue()?;
        if chroma > 3 {
            return Err(bad("chroma_format_idc out of range"));
        }
        info.chroma_format_idc = chroma as u8;
        if chroma == 3 {
            b.bit()?; // separate_colour_plane_flag
        }
        info.bit_depth_luma = (b.ue()?.min(16) + 8) as u8;
        info.bit_depth_chroma = (b.ue()?.min(16) + 8) as u8;
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            // seq_scaling_matrix_present_flag: skip the lists.
            let lists = if chroma == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + b.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let cycle = b.ue()?;
            if cycle > 255 {
                return Err(bad("num_ref_frames_in_pic_order_cnt_cycle out of range"));
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = u64::from(b.ue()?) + 1;
    let h_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = b.bit()? == 1;
    info.progressive = frame_mbs_only;
    if !frame_mbs_only {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let field = if frame_mbs_only { 1 } else { 2 };
    let mut width = w_mbs * 16;
    let mut height = h_units * 16 * field;
    if b.bit()? == 1 {
        let (l, r, t, bo) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        let (cx, cy) = match info.chroma_format_idc {
            1 => (2, 2 * field),
            2 => (2, field),
            _ => (1, field),
        };
        let crop_w = cx * (u64::from(l) + u64::from(r));
        let crop_h = cy * (u64::from(t) + u64::from(bo));
        if crop_w >= width || crop_h >= height {
            return Err(bad("the SPS crops the whole picture"));
        }
        width -= crop_w;
        height -= crop_h;
    }
    info.width = width.min(u64::from(u32::MAX)) as u32;
    info.height = height.min(u64::from(u32::MAX)) as u32;
    Ok(())
}

/// The PPS's entropy_coding_mode_flag.
fn pps_cabac(nal: &[u8]) -> Option<bool> {
    let data = rbsp(nal);
    let mut b = Bits { data: &data, pos: 0 };
    b.ue().ok()?; // pic_parameter_set_id
    b.ue().ok()?; // seq_parameter_set_id
    b.bit().ok().map(|f| f == 1)
}

/// Appends a length-prefixed (AVCC) sample to `out` as Annex B: each NAL unit
/// after a 4-byte start code.
pub(crate) fn annexb(sample: &[u8], len_size: u8, out: &mut Vec<u8>) -> Result<(), String> {
    let n = usize::from(len_size);
    let mut at = 0usize;
    while at < sample.len() {
        let head = sample.get(at..at + n).ok_or("a NAL length is cut short")?;
        let len = head.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let nal = sample.get(at + n..at + n + len).ok_or("a NAL unit runs past its sample")?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        at += n + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes Exp-Golomb codes, for building parameter sets in tests.
    #[derive(Default)]
    pub(crate) struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        pub(crate) fn bit(&mut self, b: u32) -> &mut Self {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if b != 0 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
            self
        }

        pub(crate) fn bits(&mut self, v: u32, n: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1);
            }
            self
        }

        pub(crate) fn ue(&mut self, v: u32) -> &mut Self {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.bits(0, len - 1).bits(x, len)
        }

        pub(crate) fn finish(&mut self) -> Vec<u8> {
            self.bit(1); // rbsp_stop_one_bit
            std::mem::take(&mut self.bytes)
        }
    }

    /// A High-profile SPS for a `w` x `h` picture (multiples of 16).
    pub(crate) fn high_sps(w: u32, h: u32, chroma: u32, depth: u32, progressive: bool) -> Vec<u8> {
        let mut b = BitWriter::default();
        b.bits(100, 8).bits(0, 8).bits(40, 8).ue(0);
        b.ue(chroma);
        if chroma == 3 {
            b.bit(0);
        }
        b.ue(depth - 8).ue(depth - 8).bit(0).bit(0);
        b.ue(0).ue(0).ue(0).ue(4).bit(0);
        let field = if progressive { 1 } else { 2 };
        b.ue(w / 16 - 1).ue(h / 16 / field - 1).bit(u32::from(progressive));
        if !progressive {
            b.bit(1);
        }
        b.bit(1).bit(0).bit(0);
        let mut nal = vec![0x67];
        nal.extend(b.finish());
        nal
    }

    pub(crate) fn avcc_with(sps: &[u8]) -> Vec<u8> {
        let mut a = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        a.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        a.extend_from_slice(sps);
        let pps = [0x68u8, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        a.push(1);
        a.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        a.extend_from_slice(&pps);
        a
    }

    #[test]
    fn a_high_profile_sps_gives_its_size_and_features() {
        let info = parse_avcc(&avcc_with(&high_sps(1920, 1088, 1, 8, true))).unwrap();
        assert_eq!((info.profile_idc, info.level(), info.profile_name()), (100, "4".to_owned(), "High".to_owned()));
        assert_eq!((info.width, info.height, info.chroma_format_idc, info.bit_depth_luma), (1920, 1088, 1, 8));
        assert!(info.progressive && info.sps_in_config);
        assert_eq!(info.check_decodable(), Ok(()));
    }

    #[test]
    fn ten_bit_422_and_interlaced_streams_are_refused_by_name() {
        let ten = parse_avcc(&avcc_with(&high_sps(640, 480, 1, 10, true))).unwrap();
        assert_eq!(ten.bit_depth_luma, 10);
        let e = ten.check_decodable().unwrap_err();
        assert!(e.detail.contains("8-bit"), "{e}");
        let four22 = parse_avcc(&avcc_with(&high_sps(640, 480, 2, 8, true))).unwrap();
        assert!(four22.check_decodable().unwrap_err().detail.contains("4:2:0"));
        let interlaced = parse_avcc(&avcc_with(&high_sps(1920, 1088, 1, 8, false))).unwrap();
        assert_eq!((interlaced.progressive, interlaced.height), (false, 1088));
        let e = interlaced.check_decodable().unwrap_err();
        assert!(e.detail.contains("interlaced") && e.codec.contains("High"), "{e}");
    }

    #[test]
    fn annexb_replaces_lengths_with_start_codes() {
        let mut out = Vec::new();
        annexb(&[0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06], 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x06]);
        out.clear();
        annexb(&[0, 2, 0x65, 0xaa], 2, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xaa]);
        assert!(annexb(&[0, 0, 0, 9, 0x65], 4, &mut Vec::new()).is_err());
    }
}
