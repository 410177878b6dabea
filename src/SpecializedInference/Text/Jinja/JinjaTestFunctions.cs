namespace SpecializedInference.Text.Jinja;

/// <summary>
/// jinja2's tests (<c>value is defined</c>, <c>is none</c>, <c>is divisibleby 3</c>...), with Python's type checks:
/// a bool is a number but not an integer, a string is iterable and a sequence, a dict is a sequence.
/// </summary>
internal static class JinjaTestFunctions
{
    private delegate bool Test(JinjaValue value, JinjaArgs args);

    private static readonly Dictionary<string, Test> Tests = new(StringComparer.Ordinal)
    {
        ["defined"] = (v, _) => v is not JinjaUndefined,
        ["undefined"] = (v, _) => v is JinjaUndefined,
        ["none"] = (v, _) => v is JinjaNone,
        ["boolean"] = (v, _) => v is JinjaBool,
        ["true"] = (v, _) => v is JinjaBool { Value: true },
        ["false"] = (v, _) => v is JinjaBool { Value: false },
        ["integer"] = (v, _) => v is JinjaInt,
        ["float"] = (v, _) => v is JinjaFloat,
        ["number"] = (v, _) => JinjaOperators.IsNumber(v),
        ["string"] = (v, _) => v is JinjaString,
        ["mapping"] = (v, _) => v is JinjaDict,
        ["iterable"] = (v, _) => v is JinjaString or JinjaList or JinjaDict or JinjaUndefined,
        ["sequence"] = (v, _) => v is JinjaString or JinjaList or JinjaDict or JinjaUndefined,
        ["callable"] = (v, _) => v is JinjaCallable,
        ["odd"] = (v, _) => JinjaOperators.AreEqual(JinjaOperators.Modulo(v, JinjaValue.From(2)), JinjaValue.From(1)),
        ["even"] = (v, _) => JinjaOperators.AreEqual(JinjaOperators.Modulo(v, JinjaValue.From(2)), JinjaValue.From(0)),
        ["divisibleby"] = (v, a) => JinjaOperators.AreEqual(JinjaOperators.Modulo(v, a.Expect("divisibleby", "num").Required("divisibleby", 0, "num")), JinjaValue.From(0)),
        ["eq"] = Equal,
        ["equalto"] = Equal,
        ["=="] = Equal,
        ["ne"] = (v, a) => !Equal(v, a),
        ["!="] = (v, a) => !Equal(v, a),
        ["lt"] = (v, a) => Order(v, a, "<") < 0,
        ["lessthan"] = (v, a) => Order(v, a, "<") < 0,
        ["<"] = (v, a) => Order(v, a, "<") < 0,
        ["le"] = (v, a) => Order(v, a, "<=") <= 0,
        ["<="] = (v, a) => Order(v, a, "<=") <= 0,
        ["gt"] = (v, a) => Order(v, a, ">") > 0,
        ["greaterthan"] = (v, a) => Order(v, a, ">") > 0,
        [">"] = (v, a) => Order(v, a, ">") > 0,
        ["ge"] = (v, a) => Order(v, a, ">=") >= 0,
        [">="] = (v, a) => Order(v, a, ">=") >= 0,
        ["in"] = (v, a) => JinjaOperators.Contains(a.Expect("in", "seq").Required("in", 0, "seq"), v),
        ["sameas"] = SameAs,
        ["lower"] = (v, _) => v.ToString() is var s && s.Any(char.IsLower) && !s.Any(char.IsUpper),
        ["upper"] = (v, _) => v.ToString() is var s && s.Any(char.IsUpper) && !s.Any(char.IsLower),
    };

    public static bool Exists(string name) => Tests.ContainsKey(name);

    public static bool Apply(string name, JinjaValue value, JinjaArgs args) =>
        Tests.TryGetValue(name, out var test) ? test(value, args) : throw new JinjaRuntimeError($"No test named '{name}'.");

    private static bool Equal(JinjaValue value, JinjaArgs args) => JinjaOperators.AreEqual(value, args.Expect("eq", "other").Required("eq", 0, "other"));

    private static int Order(JinjaValue value, JinjaArgs args, string op) =>
        JinjaOperators.Compare(value, args.Expect(op, "other").Required(op, 0, "other"), op);

    // Python's "is": the same object. Constants (None, True, False) are singletons, and small values compare equal.
    private static bool SameAs(JinjaValue value, JinjaArgs args)
    {
        var other = args.Expect("sameas", "other").Required("sameas", 0, "other");
        return ReferenceEquals(value, other)
            || (value, other) is (JinjaInt a, JinjaInt b) && a.Value == b.Value && a.Value is >= -5 and <= 256
            || value is JinjaUndefined && other is JinjaUndefined;
    }
}
