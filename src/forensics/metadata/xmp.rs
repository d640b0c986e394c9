//! Small, bounded readers for the few XMP properties the metadata module needs.

/// The value of a simple XMP property written either as an attribute (`prefix:Name="v"`)
/// or as an element (`<prefix:Name>v</prefix:Name>`), in the first packet that has it.
pub fn property<'a>(packets: &'a [String], name: &str) -> Option<&'a str> {
    packets.iter().find_map(|xmp| {
        let attr = format!("{name}=\"");
        if let Some(i) = xmp.find(&attr) {
            let rest = &xmp[i + attr.len()..];
            return rest.find('"').map(|end| rest[..end].trim());
        }
        let open = format!("<{name}>");
        let i = xmp.find(&open)?;
        let rest = &xmp[i + open.len()..];
        let end = rest.find(&format!("</{name}>"))?;
        let value = rest[..end].trim();
        // an rdf:Alt/Seq wrapper: take the first li
        match value.find("<rdf:li") {
            Some(li) => {
                let after = &value[li..];
                let start = after.find('>')? + 1;
                let stop = after.find("</rdf:li>")?;
                (start <= stop).then(|| after[start..stop].trim())
            }
            None => Some(value),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attribute_element_and_alt_forms() {
        let p = vec![r#"<rdf:Description xmp:CreatorTool="Adobe Photoshop 25.0"/>"#.to_string()];
        assert_eq!(property(&p, "xmp:CreatorTool"), Some("Adobe Photoshop 25.0"));
        let p = vec!["<xmp:CreatorTool>GIMP 2.10</xmp:CreatorTool>".to_string()];
        assert_eq!(property(&p, "xmp:CreatorTool"), Some("GIMP 2.10"));
        let p = vec![r#"<dc:creator><rdf:Seq><rdf:li>Jane</rdf:li></rdf:Seq></dc:creator>"#.to_string()];
        assert_eq!(property(&p, "dc:creator"), Some("Jane"));
        assert_eq!(property(&p, "xmp:Missing"), None);
        let p = vec!["<dc:creator><rdf:li".to_string()];
        assert_eq!(property(&p, "dc:creator"), None);
    }
}
