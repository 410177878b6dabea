namespace SpecializedInference.Tokenization;

/// <summary>The normalizer settings of a SentencePiece model (<c>ModelProto.normalizer_spec</c>).</summary>
public sealed record SentencePieceNormalizerSpec(
    string Name,
    byte[] PrecompiledCharsMap,
    bool AddDummyPrefix,
    bool RemoveExtraWhitespaces,
    bool EscapeWhitespaces,
    bool TreatWhitespaceAsSuffix);

/// <summary>
/// Reads and rewrites the few fields of a SentencePiece <c>ModelProto</c> the engine needs, by walking the
/// protobuf wire format (no protobuf dependency): the normalizer spec, and a copy of the model whose
/// normalizer is switched off so that Microsoft.ML.Tokenizers (which refuses any normalization but
/// "identity") does only the BPE segmentation while <see cref="SentencePieceTextNormalizer"/> normalizes.
/// </summary>
public static class SentencePieceModelProto
{
    // ModelProto fields.
    private const int TrainerSpecField = 2;
    private const int NormalizerSpecField = 3;

    // NormalizerSpec fields.
    private const int NameField = 1;
    private const int PrecompiledCharsMapField = 2;
    private const int AddDummyPrefixField = 3;
    private const int RemoveExtraWhitespacesField = 4;
    private const int EscapeWhitespacesField = 5;

    // TrainerSpec field.
    private const int TreatWhitespaceAsSuffixField = 24;

    private enum WireType { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 }

    private readonly record struct Field(int Number, WireType Type, int Start, int End, ulong Varint, int PayloadStart, int PayloadLength);

    /// <summary>Reads the normalizer spec (proto2 defaults where a field is absent).</summary>
    public static SentencePieceNormalizerSpec ReadNormalizerSpec(byte[] model, string file)
    {
        string name = "";
        byte[] charsMap = Array.Empty<byte>();
        bool addDummyPrefix = true, removeExtra = true, escape = true, suffix = false;
        foreach (var f in Fields(model, 0, model.Length, file))
        {
            if (f.Number == NormalizerSpecField && f.Type == WireType.LengthDelimited)
            {
                foreach (var n in Fields(model, f.PayloadStart, f.PayloadStart + f.PayloadLength, file))
                {
                    switch (n.Number)
                    {
                        case NameField when n.Type == WireType.LengthDelimited:
                            name = System.Text.Encoding.UTF8.GetString(model, n.PayloadStart, n.PayloadLength);
                            break;
                        case PrecompiledCharsMapField when n.Type == WireType.LengthDelimited:
                            charsMap = model.AsSpan(n.PayloadStart, n.PayloadLength).ToArray();
                            break;
                        case AddDummyPrefixField when n.Type == WireType.Varint: addDummyPrefix = n.Varint != 0; break;
                        case RemoveExtraWhitespacesField when n.Type == WireType.Varint: removeExtra = n.Varint != 0; break;
                        case EscapeWhitespacesField when n.Type == WireType.Varint: escape = n.Varint != 0; break;
                    }
                }
            }
            else if (f.Number == TrainerSpecField && f.Type == WireType.LengthDelimited)
            {
                foreach (var t in Fields(model, f.PayloadStart, f.PayloadStart + f.PayloadLength, file))
                    if (t.Number == TreatWhitespaceAsSuffixField && t.Type == WireType.Varint)
                        suffix = t.Varint != 0;
            }
        }

        return new SentencePieceNormalizerSpec(name, charsMap, addDummyPrefix, removeExtra, escape, suffix);
    }

    /// <summary>
    /// A copy of the model whose normalizer spec is <c>{name: "identity", add_dummy_prefix: false,
    /// remove_extra_whitespaces: false, escape_whitespaces: false}</c>: the text handed to the library is already
    /// normalized, whitespace-escaped and prefixed.
    /// </summary>
    public static byte[] WithIdentityNormalizer(byte[] model, string file)
    {
        var spec = new List<byte>();
        WriteTag(spec, NameField, WireType.LengthDelimited);
        var identity = "identity"u8.ToArray();
        WriteVarint(spec, (ulong)identity.Length);
        spec.AddRange(identity);
        foreach (var field in new[] { AddDummyPrefixField, RemoveExtraWhitespacesField, EscapeWhitespacesField })
        {
            WriteTag(spec, field, WireType.Varint);
            WriteVarint(spec, 0);
        }

        var output = new List<byte>(model.Length);
        bool replaced = false;
        foreach (var f in Fields(model, 0, model.Length, file))
        {
            if (f.Number == NormalizerSpecField)
            {
                if (replaced) continue;
                replaced = true;
                WriteTag(output, NormalizerSpecField, WireType.LengthDelimited);
                WriteVarint(output, (ulong)spec.Count);
                output.AddRange(spec);
            }
            else
            {
                output.AddRange(model.AsSpan(f.Start, f.End - f.Start).ToArray());
            }
        }

        if (!replaced)
        {
            WriteTag(output, NormalizerSpecField, WireType.LengthDelimited);
            WriteVarint(output, (ulong)spec.Count);
            output.AddRange(spec);
        }

        return output.ToArray();
    }

    private static IEnumerable<Field> Fields(byte[] data, int start, int end, string file)
    {
        int pos = start;
        while (pos < end)
        {
            int fieldStart = pos;
            ulong tag = ReadVarint(data, ref pos, end, file);
            int number = (int)(tag >> 3);
            var type = (WireType)(tag & 7);
            switch (type)
            {
                case WireType.Varint:
                    ulong v = ReadVarint(data, ref pos, end, file);
                    yield return new Field(number, type, fieldStart, pos, v, 0, 0);
                    break;
                case WireType.Fixed64:
                    pos = Skip(pos, 8, end, file);
                    yield return new Field(number, type, fieldStart, pos, 0, 0, 0);
                    break;
                case WireType.Fixed32:
                    pos = Skip(pos, 4, end, file);
                    yield return new Field(number, type, fieldStart, pos, 0, 0, 0);
                    break;
                case WireType.LengthDelimited:
                    ulong len = ReadVarint(data, ref pos, end, file);
                    if (len > (ulong)(end - pos)) throw Corrupt(file, $"field {number} of {len} bytes runs past its message");
                    int payload = pos;
                    pos += (int)len;
                    yield return new Field(number, type, fieldStart, pos, 0, payload, (int)len);
                    break;
                default:
                    throw Corrupt(file, $"unsupported protobuf wire type {(int)type} at byte {fieldStart}");
            }
        }
    }

    private static int Skip(int pos, int n, int end, string file) =>
        end - pos >= n ? pos + n : throw Corrupt(file, "truncated fixed-size field");

    private static ulong ReadVarint(byte[] data, ref int pos, int end, string file)
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= end) throw Corrupt(file, "truncated varint");
            byte b = data[pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }

        throw Corrupt(file, "varint longer than 10 bytes");
    }

    private static void WriteTag(List<byte> output, int field, WireType type) => WriteVarint(output, ((ulong)field << 3) | (ulong)type);

    private static void WriteVarint(List<byte> output, ulong value)
    {
        while (value >= 0x80)
        {
            output.Add((byte)(value | 0x80));
            value >>= 7;
        }

        output.Add((byte)value);
    }

    private static InvalidDataException Corrupt(string file, string what) => new($"{file}: not a valid SentencePiece model: {what}");
}
