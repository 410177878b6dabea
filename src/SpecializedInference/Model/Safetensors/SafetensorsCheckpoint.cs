using System.Runtime.InteropServices;
using System.Text.Json;

namespace SpecializedInference.Model.Safetensors;

/// <summary>
/// The weights of a checkpoint folder: one <c>model.safetensors</c>, or the shards listed by
/// <c>model.safetensors.index.json</c>. Tensors are looked up by name and read (converted to f32 or f16) in
/// bounded pieces straight from the memory-mapped files.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, (TensorEntry Entry, SafetensorsFile File)> _tensors;

    /// <summary>The files in use (one, or every shard).</summary>
    public IReadOnlyList<string> Files => _files.Select(f => f.Path).ToArray();

    public IEnumerable<TensorEntry> Tensors => _tensors.Values.Select(t => t.Entry);

    private SafetensorsCheckpoint(List<SafetensorsFile> files, Dictionary<string, (TensorEntry, SafetensorsFile)> tensors)
    {
        _files = files;
        _tensors = tensors;
    }

    /// <summary>Opens the safetensors weights of <paramref name="directory"/>.</summary>
    public static SafetensorsCheckpoint Open(string directory)
    {
        var index = System.IO.Path.Combine(directory, IndexFileName);
        var single = System.IO.Path.Combine(directory, SingleFileName);
        if (File.Exists(index)) return OpenSharded(directory, index);
        if (File.Exists(single)) return OpenFiles(new[] { single }, null);
        throw new CheckpointException($"{directory}: no {SingleFileName} or {IndexFileName} (a Hugging Face safetensors checkpoint folder is expected)");
    }

    /// <summary>Opens one safetensors file on its own.</summary>
    public static SafetensorsCheckpoint OpenFile(string path) => OpenFiles(new[] { path }, null);

    private static SafetensorsCheckpoint OpenSharded(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{indexPath}: expected an object with a 'weight_map' object");
            weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] must be a file name string");
                var shard = p.Value.GetString()!;
                // A shard is a file of this folder: no paths that would reach elsewhere.
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or "..")
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] = '{shard}' is not a file name in the checkpoint folder");
                weightMap[p.Name] = shard;
            }
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{indexPath}: not valid JSON: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new CheckpointException($"{indexPath}: cannot read: {e.Message}", e);
        }

        var shardPaths = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Select(s => System.IO.Path.Combine(directory, s)).ToArray();
        foreach (var s in shardPaths)
            if (!File.Exists(s))
                throw new CheckpointException($"{indexPath}: shard '{System.IO.Path.GetFileName(s)}' does not exist in {directory}");
        return OpenFiles(shardPaths, (indexPath, weightMap));
    }

    private static SafetensorsCheckpoint OpenFiles(string[] paths, (string Path, Dictionary<string, string> Map)? index)
    {
        var files = new List<SafetensorsFile>();
        try
        {
            var tensors = new Dictionary<string, (TensorEntry, SafetensorsFile)>(StringComparer.Ordinal);
            foreach (var path in paths)
            {
                var file = SafetensorsFile.Open(path);
                files.Add(file);
                foreach (var t in file.Tensors.Values)
                    if (!tensors.TryAdd(t.Name, (t, file)))
                        throw new CheckpointException($"tensor '{t.Name}' is in both {tensors[t.Name].Item1.File} and {path}");
            }

            if (index is { } ix)
            {
                foreach (var (name, shard) in ix.Map)
                {
                    if (!tensors.TryGetValue(name, out var found) || System.IO.Path.GetFileName(found.Item1.File) != shard)
                        throw new CheckpointException($"{ix.Path}: weight_map says tensor '{name}' is in '{shard}', but that shard's header does not list it");
                }
            }

            return new SafetensorsCheckpoint(files, tensors);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    public bool TryGet(string name, out TensorEntry entry)
    {
        if (_tensors.TryGetValue(name, out var t))
        {
            entry = t.Entry;
            return true;
        }

        entry = null!;
        return false;
    }

    /// <summary>Converts elements <c>[first, first + destination.Length)</c> of a float tensor to f32.</summary>
    public void ReadFloat32(TensorEntry tensor, long first, Span<float> destination)
    {
        var bytes = Bytes(tensor, first, destination.Length);
        switch (tensor.Dtype)
        {
            case SafetensorsDtype.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                break;
            case SafetensorsDtype.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(bytes);
                for (int i = 0; i < destination.Length; i++) destination[i] = (float)halves[i];
                break;
            case SafetensorsDtype.BF16:
                // bfloat16 is the top half of a float32.
                var raw = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < destination.Length; i++) destination[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
                break;
            default:
                throw NotFloat(tensor);
        }
    }

    /// <summary>
    /// Converts elements <c>[first, first + destination.Length)</c> of a float tensor to IEEE f16.
    /// Returns the number of finite values that became infinite (out of f16's range).
    /// </summary>
    public int ReadFloat16(TensorEntry tensor, long first, Span<Half> destination)
    {
        var bytes = Bytes(tensor, first, destination.Length);
        int overflows = 0;
        switch (tensor.Dtype)
        {
            case SafetensorsDtype.F16:
                MemoryMarshal.Cast<byte, Half>(bytes).CopyTo(destination);
                return 0;
            case SafetensorsDtype.F32:
                var floats = MemoryMarshal.Cast<byte, float>(bytes);
                for (int i = 0; i < destination.Length; i++)
                {
                    var h = (Half)floats[i];
                    if (Half.IsInfinity(h) && float.IsFinite(floats[i])) overflows++;
                    destination[i] = h;
                }

                return overflows;
            case SafetensorsDtype.BF16:
                var raw = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < destination.Length; i++)
                {
                    float f = BitConverter.Int32BitsToSingle(raw[i] << 16);
                    var h = (Half)f;
                    if (Half.IsInfinity(h) && float.IsFinite(f)) overflows++;
                    destination[i] = h;
                }

                return overflows;
            default:
                throw NotFloat(tensor);
        }
    }

    private ReadOnlySpan<byte> Bytes(TensorEntry tensor, long first, int count)
    {
        if (!_tensors.TryGetValue(tensor.Name, out var t) || !ReferenceEquals(t.Entry, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not part of this checkpoint", nameof(tensor));
        int size = tensor.Dtype.SizeInBytes();
        return t.File.GetBytes(tensor, first * size, checked(count * size));
    }

    private static CheckpointException NotFloat(TensorEntry t) =>
        new($"{t.File}: tensor '{t.Name}' has dtype {t.Dtype.Name()}; expected F32, F16 or BF16");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
