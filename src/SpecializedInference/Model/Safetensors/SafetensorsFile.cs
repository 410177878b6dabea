using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace SpecializedInference.Model.Safetensors;

/// <summary>One tensor of a safetensors file, as its header describes it (already validated).</summary>
/// <param name="Name">The tensor's name in the header.</param>
/// <param name="File">Path of the file that holds it.</param>
/// <param name="Dtype">Element type.</param>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="DataOffset">Byte offset of the first element from the start of the file.</param>
/// <param name="ByteLength">Bytes of data: product(shape) * dtype size.</param>
public sealed record TensorEntry(string Name, string File, SafetensorsDtype Dtype, long[] Shape, long DataOffset, long ByteLength)
{
    public long ElementCount => ByteLength / Dtype.SizeInBytes();

    public string ShapeText => FormatShape(Shape);

    public static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}

/// <summary>
/// A safetensors file: an 8-byte little-endian header length N, N bytes of JSON header
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>), then the raw data.
/// The header is validated completely before any data is touched (lengths within the file, offsets in range and
/// disjoint, byte length = shape × dtype size, known dtypes), and the data is memory-mapped read-only, so a
/// truncated or hostile file is rejected with an error instead of causing an out-of-range read.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The format's own cap on the header (the reference implementation refuses larger ones).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private bool _disposed;

    public string Path { get; }

    public long FileLength { get; }

    /// <summary>Tensors by name, in header order.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Tensors { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, long length, Dictionary<string, TensorEntry> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        FileLength = length;
        Tensors = tensors;
        Metadata = metadata;
        long dataEnd = tensors.Count == 0 ? 0 : tensors.Values.Max(t => t.DataOffset + t.ByteLength);
        if (dataEnd > 0)
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
    }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="CheckpointException">The file is not a valid safetensors file; the message says why.</exception>
    public static SafetensorsFile Open(string path)
    {
        long length;
        byte[] header;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            length = stream.Length;
            if (length < 8)
                throw new CheckpointException($"{path}: file is {length} bytes; a safetensors file starts with an 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            ulong headerLength = BitConverter.IsLittleEndian
                ? BitConverter.ToUInt64(prefix)
                : System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > (ulong)(length - 8))
                throw new CheckpointException(
                    $"{path}: header length {headerLength} runs past the end of the file ({length} bytes, so at most {length - 8} header bytes); the file is truncated or not safetensors");
            if (headerLength > MaxHeaderBytes)
                throw new CheckpointException($"{path}: header length {headerLength} exceeds the format's limit of {MaxHeaderBytes} bytes");
            if (headerLength < 2)
                throw new CheckpointException($"{path}: header length {headerLength} is too short for a JSON object");
            header = new byte[(int)headerLength];
            stream.ReadExactly(header);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{path}: cannot read: {e.Message}", e);
        }

        long dataStart = 8 + header.Length;
        var (tensors, metadata) = ParseHeader(path, header, dataStart, length - dataStart);
        return new SafetensorsFile(path, length, tensors, metadata);
    }

    private static (Dictionary<string, TensorEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataStart, long dataLength)
    {
        JsonDocument doc;
        try
        {
            // The header may be padded with trailing spaces to align the data.
            doc = JsonDocument.Parse(header.AsMemory().TrimEnd((byte)' '), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: header is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{path}: header must be a JSON object, found {doc.RootElement.ValueKind}");

            var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointException($"{path}: __metadata__ must be an object of strings");
                    foreach (var m in property.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }

                var entry = ParseTensor(path, property, dataStart, dataLength);
                if (!tensors.TryAdd(entry.Name, entry))
                    throw new CheckpointException($"{path}: tensor '{entry.Name}' appears twice in the header");
            }

            // Data ranges must not overlap: sort by start and compare neighbours (empty tensors overlap nothing).
            var ordered = tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.DataOffset).ToArray();
            for (int i = 1; i < ordered.Length; i++)
            {
                var prev = ordered[i - 1];
                var cur = ordered[i];
                if (cur.DataOffset < prev.DataOffset + prev.ByteLength)
                    throw new CheckpointException(
                        $"{path}: data of tensors '{prev.Name}' (bytes {prev.DataOffset - dataStart}..{prev.DataOffset - dataStart + prev.ByteLength}) and '{cur.Name}' (bytes {cur.DataOffset - dataStart}..{cur.DataOffset - dataStart + cur.ByteLength}) overlap");
            }

            return (tensors, metadata);
        }
    }

    private static TensorEntry ParseTensor(string path, JsonProperty property, long dataStart, long dataLength)
    {
        string name = property.Name;
        var v = property.Value;
        CheckpointException Bad(string what) => new($"{path}: tensor '{name}': {what}");

        if (v.ValueKind != JsonValueKind.Object)
            throw Bad($"expected an object with dtype, shape and data_offsets, found {v.ValueKind}");
        if (!v.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad("missing string field 'dtype'");
        var dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDtypes.TryParse(dtypeText, out var dtype))
            throw Bad($"unknown dtype '{dtypeText}' (the format defines BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2)");

        if (!v.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad("missing array field 'shape'");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var n) || n < 0)
                throw Bad($"shape entry {dim.GetRawText()} is not a non-negative integer");
            shape[d++] = n;
            try
            {
                elements = checked(elements * n);
            }
            catch (OverflowException)
            {
                throw Bad($"shape {TensorEntry.FormatShape(shape.Take(d))}... has more elements than fit in 64 bits");
            }
        }

        if (!v.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Bad("missing field 'data_offsets' of two integers [begin, end]");
        var begin = offsets[0];
        var end = offsets[1];
        if (begin.ValueKind != JsonValueKind.Number || !begin.TryGetInt64(out var b) || b < 0 ||
            end.ValueKind != JsonValueKind.Number || !end.TryGetInt64(out var e) || e < 0)
            throw Bad($"data_offsets {offsets.GetRawText()} must be two non-negative integers");
        if (b > e)
            throw Bad($"data_offsets [{b}, {e}]: begin is after end");
        if (e > dataLength)
            throw Bad($"data_offsets [{b}, {e}] run past the end of the data ({dataLength} bytes after the header); the file is truncated or corrupt");

        long expectedBytes;
        try
        {
            expectedBytes = checked(elements * dtype.SizeInBytes());
        }
        catch (OverflowException)
        {
            throw Bad($"shape {TensorEntry.FormatShape(shape)} of {dtype.Name()} has more bytes than fit in 64 bits");
        }

        if (e - b != expectedBytes)
            throw Bad($"data_offsets [{b}, {e}] hold {e - b} bytes, but shape {TensorEntry.FormatShape(shape)} of {dtype.Name()} needs {expectedBytes}");

        return new TensorEntry(name, path, dtype, shape, dataStart + b, e - b);
    }

    /// <summary>
    /// The bytes <c>[offset, offset + count)</c> of a tensor's data. Bounds are checked against the tensor,
    /// whose range was checked against the file when it was opened.
    /// </summary>
    public ReadOnlySpan<byte> GetBytes(TensorEntry tensor, long offset, int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ReferenceEquals(Tensors.GetValueOrDefault(tensor.Name), tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}", nameof(tensor));
        if (offset < 0 || count < 0 || offset + count > tensor.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset}..{offset + count} are outside tensor '{tensor.Name}' ({tensor.ByteLength} bytes)");
        if (count == 0) return ReadOnlySpan<byte>.Empty;
        return new ReadOnlySpan<byte>(_base + tensor.DataOffset + offset, count);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }

        _map?.Dispose();
    }
}
