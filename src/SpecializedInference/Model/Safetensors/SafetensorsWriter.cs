using System.Buffers.Binary;
using System.Text.Json;

namespace SpecializedInference.Model.Safetensors;

/// <summary>
/// Writes a safetensors file tensor by tensor (the header is written first, so every tensor's name, dtype and
/// shape must be declared up front; data is then streamed in declaration order).
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    public sealed record Declaration(string Name, SafetensorsDtype Dtype, long[] Shape)
    {
        public long ByteLength => Shape.Aggregate(1L, (a, b) => a * b) * Dtype.SizeInBytes();
    }

    private readonly Stream _stream;
    private readonly IReadOnlyList<Declaration> _declarations;
    private int _next;
    private long _writtenOfCurrent;

    public SafetensorsWriter(string path, IReadOnlyList<Declaration> declarations, IReadOnlyDictionary<string, string>? metadata = null)
    {
        _declarations = declarations;
        _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }

            long offset = 0;
            foreach (var d in declarations)
            {
                json.WriteStartObject(d.Name);
                json.WriteString("dtype", d.Dtype.Name());
                json.WriteStartArray("shape");
                foreach (var s in d.Shape) json.WriteNumberValue(s);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + d.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += d.ByteLength;
            }

            json.WriteEndObject();
        }

        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        var header = buffer.ToArray();
        int padded = (header.Length + 8 + 7) / 8 * 8 - 8;
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        _stream.Write(prefix);
        _stream.Write(header);
        for (int i = header.Length; i < padded; i++) _stream.WriteByte((byte)' ');
    }

    /// <summary>Appends raw little-endian bytes of the current tensor (the tensors in declaration order).</summary>
    public void WriteData(ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0)
        {
            if (_next >= _declarations.Count) throw new InvalidOperationException("more data than the declared tensors hold");
            var d = _declarations[_next];
            long room = d.ByteLength - _writtenOfCurrent;
            int n = (int)Math.Min(room, bytes.Length);
            _stream.Write(bytes[..n]);
            bytes = bytes[n..];
            _writtenOfCurrent += n;
            if (_writtenOfCurrent == d.ByteLength)
            {
                _next++;
                _writtenOfCurrent = 0;
            }
        }

        // Skip over empty tensors.
        while (_next < _declarations.Count && _declarations[_next].ByteLength == 0) _next++;
    }

    /// <summary>Appends float values converted to the current tensor's dtype (F32, F16 or BF16).</summary>
    public void WriteFloats(ReadOnlySpan<float> values)
    {
        while (_next < _declarations.Count && _declarations[_next].ByteLength == 0) _next++;
        if (_next >= _declarations.Count) throw new InvalidOperationException("more data than the declared tensors hold");
        var dtype = _declarations[_next].Dtype;
        int size = dtype.SizeInBytes();
        var bytes = new byte[values.Length * size];
        for (int i = 0; i < values.Length; i++)
        {
            var dst = bytes.AsSpan(i * size, size);
            switch (dtype)
            {
                case SafetensorsDtype.F32: BinaryPrimitives.WriteSingleLittleEndian(dst, values[i]); break;
                case SafetensorsDtype.F16: BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)values[i]); break;
                case SafetensorsDtype.BF16: BinaryPrimitives.WriteUInt16LittleEndian(dst, ToBFloat16(values[i])); break;
                default: throw new NotSupportedException($"writing floats as {dtype.Name()}");
            }
        }

        WriteData(bytes);
    }

    /// <summary>Rounds to nearest even, as PyTorch's float → bfloat16 conversion does.</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    public void Dispose()
    {
        _stream.Dispose();
    }

    /// <summary>Writes a whole file from in-memory float tensors.</summary>
    public static void WriteFile(string path, IEnumerable<(string Name, SafetensorsDtype Dtype, long[] Shape, float[] Values)> tensors)
    {
        var list = tensors.ToList();
        using var w = new SafetensorsWriter(path, list.Select(t => new Declaration(t.Name, t.Dtype, t.Shape)).ToList());
        foreach (var t in list)
            if (t.Values.Length > 0)
                w.WriteFloats(t.Values);
    }
}
