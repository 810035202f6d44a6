//! Buffers of a program: creation and upload helpers (storage, uniform, zeroed activation
//! buffers, each checked against the device's binding limit), and the device layout of
//! activations (inputs encoded for upload, outputs decoded after read-back).

use super::Program;
use crate::error::{Error, Result};
use crate::fixed16;
use crate::gpu::device::GpuContext;
use crate::precision::Precision;
use wgpu::util::DeviceExt;

/// How activations are stored on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// f32, 4 bytes.
    F32,
    /// fixed16 values (in the model's input and output formats, see
    /// `Program::fixed16_fracs`) as i32, 4 bytes.
    Fixed16,
    /// f16, 2 bytes.
    F16,
}

impl Encoding {
    /// How `precision`'s activations are stored: the one place a precision becomes an
    /// encoding.
    pub(crate) fn of(precision: Precision) -> Encoding {
        match precision {
            Precision::F32 => Encoding::F32,
            Precision::Fixed16 => Encoding::Fixed16,
            Precision::F16 => Encoding::F16,
        }
    }

    /// Bytes of one value: [`Precision::bytes`] of the precision stored so.
    pub(crate) fn bytes(self) -> usize {
        match self {
            Encoding::F16 => 2,
            _ => 4,
        }
    }
}

/// Rounds an activation vector's length up so rows of every buffer start 16-byte aligned
/// (the dense kernel reads vec4 words).
pub(crate) fn stride(n: usize) -> usize {
    n.next_multiple_of(8)
}

/// Inputs in the device layout: activation values, the bitmap words with their byte offset in
/// the input buffer, and (fixed16) how many values were clipped to the input format.
pub(crate) struct Encoded {
    pub(super) values: Vec<u8>,
    pub(super) bits: Option<(u64, Vec<u8>)>,
    pub(super) clipped: u64,
}

/// Creates a storage buffer holding `data` (at least 16 bytes, zero-padded).
pub(crate) fn storage_init(ctx: &GpuContext, label: &str, data: &[u8]) -> wgpu::Buffer {
    let mut padded;
    let contents = if data.len() < 16 || data.len() % 4 != 0 {
        padded = data.to_vec();
        padded.resize(data.len().max(16).next_multiple_of(4), 0);
        &padded[..]
    } else {
        data
    };
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
}

/// Creates a uniform buffer holding `data`.
pub(crate) fn uniform_init(ctx: &GpuContext, label: &str, data: &[u8]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// Creates a zeroed activation buffer for `batch` vectors of `n` values.
pub(crate) fn activations(
    ctx: &GpuContext,
    label: &str,
    batch: usize,
    n: usize,
    enc: Encoding,
) -> Result<wgpu::Buffer> {
    zeroed(ctx, label, (batch * stride(n) * enc.bytes()).div_ceil(4))
}

/// Creates a zeroed storage buffer of `words` u32 words (at least 16 bytes), or a typed error
/// when it exceeds the device's storage binding limit.
pub(crate) fn zeroed(ctx: &GpuContext, label: &str, words: usize) -> Result<wgpu::Buffer> {
    let size = (4 * words).max(16) as u64;
    if size > ctx.device_limits().max_binding() {
        return Err(Error::LimitExceeded {
            what: format!(
                "bytes of {label} (this device's storage binding; lower max_batch, or for the \
                 EIE engine use fewer PEs)"
            ),
            value: size,
            limit: ctx.device_limits().max_binding(),
        });
    }
    Ok(ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    }))
}

/// `x` (rows of `n` values) in the device layout of `encoding` (fixed16 in the format with
/// `frac` fraction bits): strided rows, zero rows up to `padded`; and, with `bits_stride`
/// words per row, their non-zero bitmaps (a value is non-zero when any bit but its sign bit is
/// set: f32 and f16 -0.0 count as zero; a fixed16 i32 is never 0x80000000); and how many
/// values were clipped to the fixed16 format.
pub(crate) fn encode_rows(
    x: &[f32],
    n: usize,
    padded: usize,
    encoding: Encoding,
    frac: u32,
    bits_stride: Option<usize>,
) -> (Vec<u8>, Option<Vec<u8>>, u64) {
    let s = stride(n);
    let b = encoding.bytes();
    let mut out = vec![0u8; padded * s * b];
    let mut clipped = 0;
    for (row, xs) in out.chunks_exact_mut(s * b).zip(x.chunks_exact(n)) {
        for (o, &v) in row.chunks_exact_mut(b).zip(xs) {
            match encoding {
                Encoding::F32 => o.copy_from_slice(&v.to_le_bytes()),
                Encoding::Fixed16 => {
                    let (q, sat) = fixed16::quantize(v, frac);
                    clipped += sat as u64;
                    o.copy_from_slice(&(q as i32).to_le_bytes())
                }
                Encoding::F16 => o.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            }
        }
    }
    let bits = bits_stride.map(|bs| {
        let mut words = vec![0u32; padded * bs];
        for (bits, row) in words.chunks_exact_mut(bs).zip(out.chunks_exact(s * b)) {
            for (j, o) in row.chunks_exact(b).take(n).enumerate() {
                let (last, rest) = o.split_last().expect("values have bytes");
                let nonzero = last & 0x7f != 0 || rest.iter().any(|&v| v != 0);
                bits[j / 32] |= (nonzero as u32) << (j % 32);
            }
        }
        bytemuck::cast_slice(&words).to_vec()
    });
    (out, bits, clipped)
}

/// `batch` rows of `n` values from the device layout of `encoding` (fixed16 with `frac`
/// fraction bits) back to floats.
pub(crate) fn decode_rows(
    bytes: &[u8],
    batch: usize,
    n: usize,
    encoding: Encoding,
    frac: u32,
) -> Vec<f32> {
    let s = stride(n);
    let b = encoding.bytes();
    let mut out = Vec::with_capacity(batch * n);
    for row in bytes.chunks_exact(s * b).take(batch) {
        for o in row.chunks_exact(b).take(n) {
            out.push(match encoding {
                Encoding::F32 => f32::from_le_bytes([o[0], o[1], o[2], o[3]]),
                Encoding::Fixed16 => fixed16::dequantize_activation(
                    i32::from_le_bytes([o[0], o[1], o[2], o[3]]) as i16,
                    frac,
                ),
                Encoding::F16 => half::f16::from_le_bytes([o[0], o[1]]).to_f32(),
            });
        }
    }
    out
}

impl Program {
    /// Converts `batch` input vectors to the device layout (strided rows, device number
    /// format; zero inputs up to the padded batch) and, for programs that read them, their
    /// non-zero bitmaps ([`encode_rows`]).
    pub(super) fn encode(&self, x: &[f32]) -> Encoded {
        let batch = x.len() / self.in_size;
        let padded = match self.input_bits {
            Some(bits) if batch > 1 => batch.next_multiple_of(bits.tile),
            _ => batch,
        };
        let (values, bits, clipped) = encode_rows(
            x,
            self.in_size,
            padded,
            self.encoding,
            self.fixed16_fracs.0,
            self.input_bits.map(|l| l.stride),
        );
        let bits = self
            .input_bits
            .zip(bits)
            .map(|(layout, bits)| ((4 * layout.base) as u64, bits));
        Encoded {
            values,
            bits,
            clipped,
        }
    }

    /// Converts device output rows back to `batch * out_size` floats.
    pub(super) fn decode(&self, bytes: &[u8], batch: usize) -> Vec<f32> {
        decode_rows(
            bytes,
            batch,
            self.out_size,
            self.encoding,
            self.fixed16_fracs.1,
        )
    }

    /// Bytes of `batch` output rows in the device layout.
    pub(super) fn output_bytes(&self, batch: usize) -> u64 {
        (batch * stride(self.out_size) * self.encoding.bytes()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Encoding;
    use crate::precision::Precision;

    #[test]
    fn encoding_stores_the_precision_in_its_bytes() {
        for p in Precision::ALL {
            assert_eq!(Encoding::of(p).bytes(), p.bytes(), "{}", p.name());
        }
    }
}
