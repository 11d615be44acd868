// window.exactJSON, a Swagger UI plugin: show JSON answers as the service
// wrote them, indented, instead of through Swagger UI's JSON.parse and
// JSON.stringify, which rewrite numbers (the money 2320.00 would read 2320).
window.exactJSON = (function () {
  // indent lays out valid JSON text as JSON.stringify(v, null, 2) would,
  // leaving every token, numbers included, exactly as written.
  function indent(text) {
    var out = "", depth = 0, inString = false, escaped = false;
    var newline = function () { return "\n" + "  ".repeat(depth); };
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (inString) {
        out += c;
        if (escaped) escaped = false;
        else if (c === "\\") escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      switch (c) {
      case '"': inString = true; out += c; break;
      case "{": case "[":
        var j = i + 1;
        while (j < text.length && /\s/.test(text[j])) j++;
        if (text[j] === (c === "{" ? "}" : "]")) { out += c + text[j]; i = j; break; }
        depth++; out += c + newline(); break;
      case "}": case "]": depth--; out += newline() + c; break;
      case ",": out += "," + newline(); break;
      case ":": out += ": "; break;
      case " ": case "\n": case "\r": case "\t": break;
      default: out += c;
      }
    }
    return out;
  }

  return function () {
    return {wrapComponents: {responseBody: function (Original, system) {
      return function (props) {
        var h = system.React.createElement;
        var text = props.content;
        if (typeof text !== "string" || !/json/i.test(props.contentType || "")) return h(Original, props);
        try { JSON.parse(text); } catch (e) { return h(Original, props); }
        var HighlightCode = system.getComponent("HighlightCode", true);
        return h("div", null, h("h5", null, "Response body"),
          h(HighlightCode, {language: "json", downloadable: true, fileName: "response.json", canCopy: true}, indent(text)));
      };
    }}};
  };
})();
