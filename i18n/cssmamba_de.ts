<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="de_DE" sourcelanguage="en">
<context>
    <name>CSSMamba</name>
    <message>
        <source>Accuracy assessment</source>
        <translation>Genauigkeitsbewertung</translation>
    </message>
    <message>
        <source>Accuracy</source>
        <translation>Genauigkeit</translation>
    </message>
    <message>
        <source>Compares a classification raster with reference data the model did not train on: the confusion matrix (reference in rows, classification in columns), overall accuracy (OA), average accuracy (AA, the mean of the per-class producer's accuracies), Cohen's kappa (κ), and per class the producer's accuracy (PA, recall), user's accuracy (UA, precision) and F1.

Classification raster: one band of class ids (0 = unclassified), e.g. from 'Classify raster'. Reference pixels it leaves at 0 count as errors.
Give the reference either as ROIs or as a label raster, not both:
Reference ROIs (vector): polygons or points with the true class, in any CRS; a polygon labels the pixels whose centres it contains. Unsaved edits and 'Selected features only' are honoured.
Class id field of the reference ROIs: whole numbers from 1, the same ids as the classification.
Class name field of the reference ROIs (optional): class names for the report.
Reference label raster: labels on exactly the classification's grid (0 = unlabelled).
Accuracy report (HTML): the report. It adds the area-adjusted accuracy of Olofsson et al. (2014): with the classification's classes as strata, the OA, user's and producer's accuracies weighted by each class's share of the map, and each class's estimated area (ha for a projected raster, else pixels), with 95 % confidence intervals. They assume the reference is a stratified random sample of the map classes; for drawn ROIs they are an approximation.
Per-class table (CSV, optional): each class's row of the confusion matrix and a 'total' row.
All results (JSON, optional): every number of the assessment, for scripts.
OA, AA and κ are also outputs for models.</source>
        <translation>Vergleicht ein Klassifikationsraster mit Referenzdaten, auf denen das Modell nicht trainiert wurde: die Konfusionsmatrix (Referenz in den Zeilen, Klassifikation in den Spalten), die Gesamtgenauigkeit (OA), die durchschnittliche Genauigkeit (AA, der Mittelwert der Herstellergenauigkeiten der Klassen), Cohens Kappa (κ) und je Klasse die Herstellergenauigkeit (PA, Recall), die Nutzergenauigkeit (UA, Präzision) und F1.

Klassifikationsraster: ein Band mit Klassen-IDs (0 = nicht klassifiziert), z. B. aus „Raster klassifizieren“. Referenzpixel, die es auf 0 lässt, zählen als Fehler.
Die Referenz entweder als ROIs oder als Label-Raster angeben, nicht beides:
Referenz-ROIs (Vektor): Polygone oder Punkte mit der wahren Klasse, in beliebigem KBS; ein Polygon kennzeichnet die Pixel, deren Mittelpunkte es enthält. Ungespeicherte Änderungen und „Nur gewählte Objekte“ werden berücksichtigt.
Klassen-ID-Feld der Referenz-ROIs: ganze Zahlen ab 1, dieselben IDs wie in der Klassifikation.
Klassennamen-Feld der Referenz-ROIs (optional): Klassennamen für den Bericht.
Referenz-Label-Raster: Labels auf genau dem Gitter der Klassifikation (0 = ohne Label).
Genauigkeitsbericht (HTML): der Bericht. Er enthält auch die flächenbereinigte Genauigkeit nach Olofsson et al. (2014): mit den Klassen der Klassifikation als Schichten die OA sowie die Nutzer- und Herstellergenauigkeiten, gewichtet mit dem Anteil jeder Klasse an der Karte, und die geschätzte Fläche jeder Klasse (ha bei einem projizierten Raster, sonst Pixel), jeweils mit 95-%-Konfidenzintervallen. Sie setzen voraus, dass die Referenz eine geschichtete Zufallsstichprobe der Kartenklassen ist; für gezeichnete ROIs sind sie eine Näherung.
Tabelle je Klasse (CSV, optional): die Zeile der Konfusionsmatrix jeder Klasse und eine Zeile „total“.
Alle Ergebnisse (JSON, optional): alle Zahlen der Bewertung, für Skripte.
OA, AA und κ sind auch Ausgaben, für Modelle.</translation>
    </message>
    <message>
        <source>Classification raster</source>
        <translation>Klassifikationsraster</translation>
    </message>
    <message>
        <source>Reference ROIs (vector)</source>
        <translation>Referenz-ROIs (Vektor)</translation>
    </message>
    <message>
        <source>Class id field of the reference ROIs</source>
        <translation>Klassen-ID-Feld der Referenz-ROIs</translation>
    </message>
    <message>
        <source>Class name field of the reference ROIs</source>
        <translation>Klassennamen-Feld der Referenz-ROIs</translation>
    </message>
    <message>
        <source>Reference label raster</source>
        <translation>Referenz-Label-Raster</translation>
    </message>
    <message>
        <source>Accuracy report (HTML)</source>
        <translation>Genauigkeitsbericht (HTML)</translation>
    </message>
    <message>
        <source>HTML files (*.html)</source>
        <translation>HTML-Dateien (*.html)</translation>
    </message>
    <message>
        <source>Per-class table (CSV)</source>
        <translation>Tabelle je Klasse (CSV)</translation>
    </message>
    <message>
        <source>CSV files (*.csv)</source>
        <translation>CSV-Dateien (*.csv)</translation>
    </message>
    <message>
        <source>All results (JSON)</source>
        <translation>Alle Ergebnisse (JSON)</translation>
    </message>
    <message>
        <source>JSON files (*.json)</source>
        <translation>JSON-Dateien (*.json)</translation>
    </message>
    <message>
        <source>Overall accuracy (OA)</source>
        <translation>Gesamtgenauigkeit (OA)</translation>
    </message>
    <message>
        <source>Average accuracy (AA)</source>
        <translation>Durchschnittliche Genauigkeit (AA)</translation>
    </message>
    <message>
        <source>Cohen's kappa</source>
        <translation>Cohens Kappa</translation>
    </message>
    <message>
        <source>Check installation</source>
        <translation>Installation prüfen</translation>
    </message>
    <message>
        <source>Tools</source>
        <translation>Werkzeuge</translation>
    </message>
    <message>
        <source>Checks that the plugin's Mamba engine computes correctly on this computer and shows how fast it is. The selective scan (the core of every Mamba model) runs over the pixels of the chosen raster and is compared with a slow, exact float64 reference; then each available scan backend (pure PyTorch, the optional compiled CPU kernel, CUDA) is timed on the whole image.

Raster: any raster; its pixels, in raster order, form the scan sequence (one token per pixel).
Device: Auto uses the GPU when PyTorch sees one.
The log lists the device, PyTorch version, thread count, backend and timings, and whether the optional GPU accelerator mamba-ssm is available, not installed, or installed but failing (with the reason).</source>
        <translation>Prüft, ob die Mamba-Engine der Erweiterung auf diesem Rechner richtig rechnet, und zeigt, wie schnell sie ist. Der Selective Scan (der Kern jedes Mamba-Modells) läuft über die Pixel des gewählten Rasters und wird mit einer langsamen, exakten float64-Referenz verglichen; danach wird jedes verfügbare Scan-Backend (reines PyTorch, der optionale kompilierte CPU-Kernel, CUDA) auf dem ganzen Bild gemessen.

Raster: ein beliebiges Raster; seine Pixel bilden in Rasterreihenfolge die Scan-Sequenz (ein Token je Pixel).
Gerät: „Automatisch“ nutzt die GPU, wenn PyTorch eine findet.
Das Protokoll nennt Gerät, PyTorch-Version, Anzahl der Threads, Backend und Zeiten sowie, ob der optionale GPU-Beschleuniger mamba-ssm verfügbar, nicht installiert oder installiert, aber fehlerhaft ist (mit dem Grund).</translation>
    </message>
    <message>
        <source>Raster</source>
        <translation>Raster</translation>
    </message>
    <message>
        <source>Device</source>
        <translation>Gerät</translation>
    </message>
    <message>
        <source>Auto</source>
        <translation>Automatisch</translation>
    </message>
    <message>
        <source>CPU</source>
        <translation>CPU</translation>
    </message>
    <message>
        <source>CUDA</source>
        <translation>CUDA</translation>
    </message>
    <message>
        <source>Self-check passed</source>
        <translation>Selbsttest bestanden</translation>
    </message>
    <message>
        <source>Report</source>
        <translation>Bericht</translation>
    </message>
    <message>
        <source>Classify raster</source>
        <translation>Raster klassifizieren</translation>
    </message>
    <message>
        <source>Classification</source>
        <translation>Klassifikation</translation>
    </message>
    <message>
        <source>Classifies a raster with a model trained by 'Train CSSMamba' or 'Train M3amba (multi-modal)'. The raster is read and written tile by tile, so it may be far larger than memory. The outputs lie on the raster's grid (GeoTIFF) and are loaded styled; each also gets a .qml style file of the same name, so the style survives reopening.

Raster to classify: it needs the bands the model was trained on (same count and wavelengths).
Model file: a .pt file written by 'Train CSSMamba' or 'Train M3amba (multi-modal)'.
Auxiliary rasters: only for a multi-modal model: the same kinds of rasters (LiDAR, SAR) in the same order as in training.
Device: Auto uses the GPU when PyTorch sees one, else the CPU.
Bands to read (advanced): only for a raster with another number of bands than the training raster and no wavelengths to find the model's bands by; such a raster is otherwise refused.
Tile size, Tile overlap (advanced): smaller tiles need less memory; the overlap hides tile edges. 0 = the tiles the model was trained on, else the defaults. Multi-modal models ignore both.
Classes: the class map (0 = nodata) with the model's class names and colours.
Confidence: the winning class's probability, 0–1; low values show where the model hesitates, often at class boundaries.
Clusters: CSSMamba's cluster map (the sub-class clusters the pixels joined), to inspect boundaries; MambaHSI and M3amba models have none.
Class probabilities (optional): one band per class.
Classes, minimum mapping unit (optional): the class map with every patch smaller than 'Minimum mapping unit' pixels merged into its largest neighbour (GDAL's sieve filter; 'Connectedness' 8 joins pixels that touch at a corner, 4 only along an edge), as maps are delivered.
Classes, majority filtered (optional): every pixel gets the most frequent class of its 'Majority window' neighbourhood, which removes single pixels and smooths borders.
Both keep the unclassified pixels and the class colours; the class map itself stays as predicted.</source>
        <translation>Klassifiziert ein Raster mit einem Modell aus „CSSMamba trainieren“ oder „M3amba trainieren (multimodal)“. Das Raster wird kachelweise gelesen und geschrieben und darf daher weit größer als der Arbeitsspeicher sein. Die Ausgaben liegen auf dem Gitter des Rasters (GeoTIFF) und werden gestylt geladen; jede erhält außerdem eine gleichnamige .qml-Stildatei, damit der Stil beim erneuten Öffnen erhalten bleibt.

Zu klassifizierendes Raster: es braucht die Bänder, auf denen das Modell trainiert wurde (gleiche Anzahl und Wellenlängen).
Modelldatei: eine .pt-Datei aus „CSSMamba trainieren“ oder „M3amba trainieren (multimodal)“.
Zusatzraster: nur für ein multimodales Modell: dieselben Arten von Rastern (LiDAR, SAR) in derselben Reihenfolge wie im Training.
Gerät: „Automatisch“ nutzt die GPU, wenn PyTorch eine findet, sonst die CPU.
Zu lesende Bänder (erweitert): nur für ein Raster mit einer anderen Bandanzahl als das Trainingsraster und ohne Wellenlängen, über die sich die Bänder des Modells finden lassen; ein solches Raster wird sonst abgelehnt.
Kachelgröße, Kachelüberlappung (erweitert): kleinere Kacheln brauchen weniger Speicher; die Überlappung verbirgt Kachelkanten. 0 = die Kacheln, auf denen das Modell trainiert wurde, sonst die Vorgaben. Multimodale Modelle ignorieren beide.
Klassen: die Klassenkarte (0 = NoData) mit den Klassennamen und -farben des Modells.
Konfidenz: die Wahrscheinlichkeit der gewählten Klasse, 0–1; niedrige Werte zeigen, wo das Modell zögert, oft an Klassengrenzen.
Cluster: die Clusterkarte von CSSMamba (die Unterklassen-Cluster, denen die Pixel zugeordnet wurden), um Grenzen zu prüfen; MambaHSI- und M3amba-Modelle haben keine.
Klassenwahrscheinlichkeiten (optional): ein Band je Klasse.
Klassen, Mindestkartiereinheit (optional): die Klassenkarte, in der jede Fläche unter „Mindestkartiereinheit“ Pixeln ihrer größten Nachbarfläche zugeschlagen ist (GDALs Sieve-Filter; „Zusammenhang“ 8 verbindet Pixel, die sich an einer Ecke berühren, 4 nur an einer Kante), wie Karten ausgeliefert werden.
Klassen, Mehrheitsfilter (optional): jedes Pixel erhält die häufigste Klasse seiner Umgebung „Mehrheitsfenster“; das entfernt Einzelpixel und glättet Grenzen.
Beide behalten die unklassifizierten Pixel und die Klassenfarben; die Klassenkarte selbst bleibt, wie vorhergesagt.</translation>
    </message>
    <message>
        <source>Raster to classify</source>
        <translation>Zu klassifizierendes Raster</translation>
    </message>
    <message>
        <source>Model file</source>
        <translation>Modelldatei</translation>
    </message>
    <message>
        <source>CSSMamba model (*.pt)</source>
        <translation>CSSMamba-Modell (*.pt)</translation>
    </message>
    <message>
        <source>Auxiliary rasters of a multi-modal model (in the training order)</source>
        <translation>Zusatzraster eines multimodalen Modells (in der Reihenfolge des Trainings)</translation>
    </message>
    <message>
        <source>Bands to read, in the model's order (empty = as in training)</source>
        <translation>Zu lesende Bänder, in der Reihenfolge des Modells (leer = wie im Training)</translation>
    </message>
    <message>
        <source>Tile size in pixels (0 = default)</source>
        <translation>Kachelgröße in Pixeln (0 = Vorgabe)</translation>
    </message>
    <message>
        <source>Tile overlap in pixels (0 = default)</source>
        <translation>Kachelüberlappung in Pixeln (0 = Vorgabe)</translation>
    </message>
    <message>
        <source>Classes</source>
        <translation>Klassen</translation>
    </message>
    <message>
        <source>Confidence</source>
        <translation>Konfidenz</translation>
    </message>
    <message>
        <source>Clusters</source>
        <translation>Cluster</translation>
    </message>
    <message>
        <source>Minimum mapping unit in pixels</source>
        <translation>Mindestkartiereinheit in Pixeln</translation>
    </message>
    <message>
        <source>Connectedness of a patch</source>
        <translation>Zusammenhang einer Fläche</translation>
    </message>
    <message>
        <source>8 (edges and corners)</source>
        <translation>8 (Kanten und Ecken)</translation>
    </message>
    <message>
        <source>4 (edges only)</source>
        <translation>4 (nur Kanten)</translation>
    </message>
    <message>
        <source>Majority window in pixels (odd)</source>
        <translation>Mehrheitsfenster in Pixeln (ungerade)</translation>
    </message>
    <message>
        <source>Class probabilities</source>
        <translation>Klassenwahrscheinlichkeiten</translation>
    </message>
    <message>
        <source>Classes, minimum mapping unit</source>
        <translation>Klassen, Mindestkartiereinheit</translation>
    </message>
    <message>
        <source>Classes, majority filtered</source>
        <translation>Klassen, Mehrheitsfilter</translation>
    </message>
    <message>
        <source>Compare models</source>
        <translation>Modelle vergleichen</translation>
    </message>
    <message>
        <source>Training</source>
        <translation>Training</translation>
    </message>
    <message>
        <source>Trains several classifiers on the same training ROIs and the same split, classifies the raster with each, and writes one HTML report: overall accuracy, average accuracy and kappa with the training and classification times, the accuracy of every class, the class maps side by side and each model's confusion matrix. The class maps are loaded, styled with the class colours.

Models: at least two; by default the random forest and the SVM that analysts know, MambaHSI and CSSMamba. The classical ones fit in seconds; the deep ones take the time 'Train CSSMamba' takes.
Epochs (deep models): as in 'Train CSSMamba'.
Sample split: 'Auto' tests on ROIs that no model trained on when every class has at least 3 separate ROIs, else on random pixels; the report says which.
Output folder: the report (compare.html), every model file (model.pt) and class map (model_classes.tif), ready for 'Classify raster'. Cancel stops the model in progress; the models finished before it stay, and no report is written.</source>
        <translation>Trainiert mehrere Klassifikatoren auf denselben Trainings-ROIs und derselben Aufteilung, klassifiziert das Raster mit jedem und schreibt einen HTML-Bericht: Gesamtgenauigkeit, mittlere Genauigkeit und Kappa mit den Trainings- und Klassifikationszeiten, die Genauigkeit jeder Klasse, die Klassenkarten nebeneinander und die Konfusionsmatrix jedes Modells. Die Klassenkarten werden in den Klassenfarben gestylt geladen.

Modelle: mindestens zwei; vorgegeben sind der Random Forest und die SVM, die Analysten kennen, MambaHSI und CSSMamba. Die klassischen passen sich in Sekunden an; die tiefen brauchen die Zeit von „CSSMamba trainieren“.
Epochen (tiefe Modelle): wie in „CSSMamba trainieren“.
Stichprobenaufteilung: „Automatisch“ prüft auf ROIs, auf denen kein Modell trainiert hat, wenn jede Klasse mindestens 3 getrennte ROIs hat, sonst auf zufälligen Pixeln; der Bericht nennt die Aufteilung.
Ausgabeordner: der Bericht (compare.html), jede Modelldatei (Modell.pt) und Klassenkarte (Modell_classes.tif), bereit für „Raster klassifizieren“. Abbrechen stoppt das laufende Modell; die zuvor fertigen Modelle bleiben, und es wird kein Bericht geschrieben.</translation>
    </message>
    <message>
        <source>Training ROIs</source>
        <translation>Trainings-ROIs</translation>
    </message>
    <message>
        <source>Class id field</source>
        <translation>Klassen-ID-Feld</translation>
    </message>
    <message>
        <source>Class name field</source>
        <translation>Klassennamen-Feld</translation>
    </message>
    <message>
        <source>Models</source>
        <translation>Modelle</translation>
    </message>
    <message>
        <source>Random forest (500 trees)</source>
        <translation>Random Forest (500 Bäume)</translation>
    </message>
    <message>
        <source>SVM (RBF kernel)</source>
        <translation>SVM (RBF-Kernel)</translation>
    </message>
    <message>
        <source>MambaHSI</source>
        <translation>MambaHSI</translation>
    </message>
    <message>
        <source>CSSMamba</source>
        <translation>CSSMamba</translation>
    </message>
    <message>
        <source>Epochs (deep models)</source>
        <translation>Epochen (tiefe Modelle)</translation>
    </message>
    <message>
        <source>Sample split</source>
        <translation>Stichprobenaufteilung</translation>
    </message>
    <message>
        <source>Pixels per class</source>
        <translation>Pixel je Klasse</translation>
    </message>
    <message>
        <source>Ratio</source>
        <translation>Anteil</translation>
    </message>
    <message>
        <source>Separate ROIs (spatial)</source>
        <translation>Getrennte ROIs (räumlich)</translation>
    </message>
    <message>
        <source>Auto (spatial with 3 separate ROIs per class)</source>
        <translation>Automatisch (räumlich bei 3 getrennten ROIs je Klasse)</translation>
    </message>
    <message>
        <source>Random seed</source>
        <translation>Zufallsstartwert</translation>
    </message>
    <message>
        <source>Output folder</source>
        <translation>Ausgabeordner</translation>
    </message>
    <message>
        <source>Comparison report</source>
        <translation>Vergleichsbericht</translation>
    </message>
    <message>
        <source>Best overall accuracy</source>
        <translation>Beste Gesamtgenauigkeit</translation>
    </message>
    <message>
        <source>Create training ROI layer</source>
        <translation>Trainings-ROI-Layer erstellen</translation>
    </message>
    <message>
        <source>Training data</source>
        <translation>Trainingsdaten</translation>
    </message>
    <message>
        <source>Creates an empty GeoPackage polygon layer for drawing training regions (ROIs) over a raster, ready for 'Train CSSMamba': fields class_id (integer, the class) and class_name (text), in the raster's CRS, styled by class and added to the project in editing mode: draw polygons over pixels of known class, pick their class and save the edits.

Raster to draw ROIs on: the layer gets its CRS.
Classes (optional): one class per line, as '1 water', '1: water' or '1,water' (id and name), or names only ('water'), numbered 1, 2, 3 … in line order. Class ids are whole numbers from 1 (0 means unlabelled). Each class gets a colour and an entry in the class drop-down of the attribute form, and class_name is filled in from class_id. Without a list, type the ids yourself; every feature is drawn in grey until the style is reclassified (Layer Properties &gt; Symbology &gt; Classify).
Training ROI layer: the GeoPackage (.gpkg) to write; its style is saved inside it, so it comes back whenever the file is opened.</source>
        <translation>Erstellt einen leeren GeoPackage-Polygonlayer zum Zeichnen von Trainingsgebieten (ROIs) über einem Raster, bereit für „CSSMamba trainieren“: Felder class_id (Ganzzahl, die Klasse) und class_name (Text), im KBS des Rasters, nach Klassen gestylt und dem Projekt im Bearbeitungsmodus hinzugefügt: Polygone über Pixel bekannter Klasse zeichnen, ihre Klasse wählen und die Änderungen speichern.

Raster, auf dem die ROIs gezeichnet werden: der Layer erhält sein KBS.
Klassen (optional): eine Klasse je Zeile, als „1 water“, „1: water“ oder „1,water“ (ID und Name) oder nur Namen („water“), in Zeilenreihenfolge mit 1, 2, 3 … nummeriert. Klassen-IDs sind ganze Zahlen ab 1 (0 bedeutet ohne Label). Jede Klasse erhält eine Farbe und einen Eintrag in der Klassen-Auswahlliste des Attributformulars, und class_name wird aus class_id ausgefüllt. Ohne Liste die IDs selbst eingeben; jedes Objekt wird grau gezeichnet, bis der Stil neu klassifiziert wird (Layereigenschaften &gt; Symbologie &gt; Klassifizieren).
Trainings-ROI-Layer: das zu schreibende GeoPackage (.gpkg); sein Stil wird darin gespeichert und kehrt so bei jedem Öffnen der Datei zurück.</translation>
    </message>
    <message>
        <source>Raster to draw ROIs on</source>
        <translation>Raster, auf dem die ROIs gezeichnet werden</translation>
    </message>
    <message>
        <source>Classes (one per line: '1 water', or names only)</source>
        <translation>Klassen (eine je Zeile: „1 water“ oder nur Namen)</translation>
    </message>
    <message>
        <source>Training ROI layer</source>
        <translation>Trainings-ROI-Layer</translation>
    </message>
    <message>
        <source>Create sample dataset</source>
        <translation>Beispieldatensatz erstellen</translation>
    </message>
    <message>
        <source>Writes the plugin's built-in synthetic hyperspectral scene, to try the tools without data of your own: an EnMAP-like GeoTIFF (EPSG:32633, 30 m, reflectance x 10,000, wavelengths and bad-band list in the metadata) that opens in true colour, a label raster with the true classes, and a GeoPackage of training ROIs with the fields class_id and class_name, styled by class.

Rows, Columns: scene size in pixels.
Bands: number of spectral bands between 418 and 2446 nm.
Random seed: the same seed writes the same files.
Output folder: where sample.tif, sample_labels.tif, sample_rois.gpkg and classes.csv are written.</source>
        <translation>Schreibt die eingebaute synthetische Hyperspektralszene der Erweiterung, um die Werkzeuge ohne eigene Daten auszuprobieren: ein EnMAP-ähnliches GeoTIFF (EPSG:32633, 30 m, Reflexion × 10.000, Wellenlängen und Liste schlechter Bänder in den Metadaten), das sich in Echtfarben öffnet, ein Label-Raster mit den wahren Klassen und ein nach Klassen gestyltes GeoPackage mit Trainings-ROIs mit den Feldern class_id und class_name.

Zeilen, Spalten: Größe der Szene in Pixeln.
Bänder: Anzahl der Spektralbänder zwischen 418 und 2446 nm.
Zufallsstartwert: derselbe Startwert schreibt dieselben Dateien.
Ausgabeordner: wohin sample.tif, sample_labels.tif, sample_rois.gpkg und classes.csv geschrieben werden.</translation>
    </message>
    <message>
        <source>Rows</source>
        <translation>Zeilen</translation>
    </message>
    <message>
        <source>Columns</source>
        <translation>Spalten</translation>
    </message>
    <message>
        <source>Bands</source>
        <translation>Bänder</translation>
    </message>
    <message>
        <source>Sample raster</source>
        <translation>Beispielraster</translation>
    </message>
    <message>
        <source>Sample labels</source>
        <translation>Beispiel-Labels</translation>
    </message>
    <message>
        <source>Sample training ROIs</source>
        <translation>Beispiel-Trainings-ROIs</translation>
    </message>
    <message>
        <source>Class table</source>
        <translation>Klassentabelle</translation>
    </message>
    <message>
        <source>ROI statistics</source>
        <translation>ROI-Statistik</translation>
    </message>
    <message>
        <source>Before training, shows whether the classes you drew differ: per class the mean spectrum ± one standard deviation (over the wavelengths when the raster has them), its number of pixels and of separate ROIs, and the Jeffries–Matusita (JM) separability of every pair of classes, from 0 (identical spectra) to 2 (fully separable), in an HTML report.

The log and the report warn about classes with fewer than 30 pixels and about pairs below JM 1.9: draw more or larger ROIs there, merge classes that cannot be told apart, or add an auxiliary raster.
JM is computed on the first 10 principal components of the standardised ROI spectra, since a few dozen pixels cannot describe the covariance of hundreds of bands. Only the parts of the raster under the ROIs are read.</source>
        <translation>Zeigt vor dem Training, ob sich die gezeichneten Klassen unterscheiden: je Klasse das mittlere Spektrum ± eine Standardabweichung (über den Wellenlängen, wenn das Raster welche hat), die Anzahl ihrer Pixel und ihrer getrennten ROIs sowie die Jeffries-Matusita-Trennbarkeit (JM) jedes Klassenpaars, von 0 (gleiche Spektren) bis 2 (vollständig trennbar), in einem HTML-Bericht.

Protokoll und Bericht warnen vor Klassen mit weniger als 30 Pixeln und vor Paaren unter JM 1,9: Zeichnen Sie dort mehr oder größere ROIs, fassen Sie Klassen zusammen, die sich nicht unterscheiden lassen, oder nehmen Sie ein Zusatzraster hinzu.
JM wird auf den ersten 10 Hauptkomponenten der standardisierten ROI-Spektren berechnet, da einige Dutzend Pixel die Kovarianz von Hunderten von Bändern nicht beschreiben können. Gelesen werden nur die Teile des Rasters unter den ROIs.</translation>
    </message>
    <message>
        <source>Bands (empty = every good band)</source>
        <translation>Bänder (leer = alle guten Bänder)</translation>
    </message>
    <message>
        <source>ROI statistics report</source>
        <translation>ROI-Statistikbericht</translation>
    </message>
    <message>
        <source>Pairs of classes below JM 1.9</source>
        <translation>Klassenpaare unter JM 1,9</translation>
    </message>
    <message>
        <source>Suggest training areas</source>
        <translation>Trainingsgebiete vorschlagen</translation>
    </message>
    <message>
        <source>Tells you where a new ROI would help the model most: it classifies the raster with a trained model and marks the places where the model hesitates between two classes (and class or cluster borders), spread over the scene and over the classes, away from the ROIs you already have. Each point says what the model predicts there, the runner-up and why it was chosen.

Label the points (look at the image there, fill in class_id, or draw a polygon around the spot), add them to your ROIs and train again: a few well-placed pixels are worth many easy ones.
Existing ROIs (optional): no suggestion lies near them.
Number of suggestions: how many points.
Least distance in pixels (advanced): between two suggestions; 0 = from the size of the scene and the number of suggestions. Near the ROIs the half of it is kept.</source>
        <translation>Zeigt, wo eine neue ROI dem Modell am meisten hilft: Es klassifiziert das Raster mit einem trainierten Modell und markiert die Stellen, an denen das Modell zwischen zwei Klassen schwankt (und Klassen- oder Clustergrenzen), verteilt über die Szene und die Klassen, fern der ROIs, die Sie schon haben. Jeder Punkt nennt, was das Modell dort vorhersagt, die zweitbeste Klasse und warum er gewählt wurde.

Beschriften Sie die Punkte (das Bild dort ansehen, class_id ausfüllen oder ein Polygon um die Stelle zeichnen), fügen Sie sie Ihren ROIs hinzu und trainieren Sie erneut: wenige gut gesetzte Pixel wiegen viele leichte auf.
Vorhandene ROIs (optional): kein Vorschlag liegt in ihrer Nähe.
Anzahl der Vorschläge: wie viele Punkte.
Mindestabstand in Pixeln (erweitert): zwischen zwei Vorschlägen; 0 = aus der Größe der Szene und der Anzahl der Vorschläge. Zu den ROIs wird die Hälfte davon eingehalten.</translation>
    </message>
    <message>
        <source>Existing ROIs</source>
        <translation>Vorhandene ROIs</translation>
    </message>
    <message>
        <source>Number of suggestions</source>
        <translation>Anzahl der Vorschläge</translation>
    </message>
    <message>
        <source>Least distance in pixels (0 = from the scene)</source>
        <translation>Mindestabstand in Pixeln (0 = aus der Szene)</translation>
    </message>
    <message>
        <source>Suggested training areas</source>
        <translation>Vorgeschlagene Trainingsgebiete</translation>
    </message>
    <message>
        <source>Train CSSMamba</source>
        <translation>CSSMamba trainieren</translation>
    </message>
    <message>
        <source>Trains a pixel classifier on a raster from training ROIs and writes a model file for 'Classify raster', an HTML training report and, optionally, the classified training scene.

Raster: the raster to learn from (e.g. a hyperspectral scene); bad bands (bbl=0) and nodata are left out.
Bands: optional subset of bands to train on; the model remembers them.
Training ROIs: polygons or points in any CRS; the pixels whose centres they cover are the labels. 'Selected features only' and unsaved edits are honoured.
Class id field: numeric field with the class ids (whole numbers from 1); features with NULL are skipped.
Class name field (optional): text field with the class names for the legend and the report.
Validation ROIs (optional): ROIs with the same class field that choose the best epoch; every training ROI pixel then trains.
Model: CSSMamba (clustering-guided Mamba), MambaHSI (the baseline without clustering), or the classical baselines random forest (500 trees) and SVM (RBF kernel), fitted in seconds on the same bands, ROIs and split and tuned on the validation pixels; the settings of the deep models do not apply to them.
Clusters per class: CSSMamba's sub-clusters of each class.
Epochs: passes over the scene; the epoch with the best validation accuracy is kept.
Learning rate: Adam's step size.
Device: Auto uses the GPU when PyTorch sees one, else the CPU.
Random seed: the same seed gives the same split and the same model.
Sample split without validation ROIs (advanced): 'Pixels per class' draws the training and validation pixels per class at random (the papers' 30 / 10), 'Ratio' the training and validation ratios; the other labelled pixels test the model in the report. Random test pixels lie next to training pixels, which flatters the accuracy: 'Separate ROIs (spatial)' draws the same counts from some ROIs of each class and tests on the others (a class with fewer than 3 separate ROIs is cut into blocks); 'Auto' (default) is spatial when every class has 3 separate ROIs, else pixels per class. The log says which split ran.
Hidden width (advanced): 0 = the paper's 128 on a GPU whose memory fits it (else the largest width that fits), 32 on the CPU.
Token selection, Cluster loss, Gate, Pooling between stages (advanced): the paper's ablations. Pooling trains about twice as fast but cost 5 to 8 points of OA, so it is off by default.
Head neighbourhood (advanced): the pixels the classifier head looks at around each pixel. 5 x 5 smooths the map: on Salinas-A's large fields it gained 0.1 point (10 seeds), on the small objects of the MUUFL scene it cost about 1.5 points; 1 x 1 lost 1 to 5 points on both.
Memory budget (advanced): MB a training step may use; a scene that needs more trains in overlapping windows. 0 = half the RAM (CPU) or 80 % of the free GPU memory.
Training window size (advanced): on a scene larger than one classification tile (512 px), training steps over the tiles of this size that hold ROI pixels, and the classification repeats them, so the time follows the ROIs, not the scene. 0 = 64 px, the measured default. Larger windows give each ROI pixel more context but cost training time in proportion to their pixels (128 px: about 3 times) and did not raise CSSMamba's accuracy on the EnMAP scene; smaller ones train faster with less context.
Model file: written only when training completes; a cancelled run leaves none.
Training report: HTML with the training curves, confusion matrix, per-class accuracy, parameters, device and timings.
Classified training scene (optional): the training raster classified, in the class colours.</source>
        <translation>Trainiert einen Pixelklassifikator auf einem Raster anhand von Trainings-ROIs und schreibt eine Modelldatei für „Raster klassifizieren“, einen HTML-Trainingsbericht und auf Wunsch die klassifizierte Trainingsszene.

Raster: das Raster, aus dem gelernt wird (z. B. eine Hyperspektralszene); schlechte Bänder (bbl=0) und NoData bleiben außen vor.
Bänder: optionale Auswahl der Bänder für das Training; das Modell merkt sie sich.
Trainings-ROIs: Polygone oder Punkte in beliebigem KBS; die Pixel, deren Mittelpunkte sie abdecken, sind die Labels. „Nur gewählte Objekte“ und ungespeicherte Änderungen werden berücksichtigt.
Klassen-ID-Feld: numerisches Feld mit den Klassen-IDs (ganze Zahlen ab 1); Objekte mit NULL werden übersprungen.
Klassennamen-Feld (optional): Textfeld mit den Klassennamen für Legende und Bericht.
Validierungs-ROIs (optional): ROIs mit demselben Klassenfeld, die die beste Epoche bestimmen; dann trainiert jedes Pixel der Trainings-ROIs.
Modell: CSSMamba (clustergeführtes Mamba), MambaHSI (die Vergleichsbasis ohne Clusterbildung) oder die klassischen Vergleichsverfahren Random Forest (500 Bäume) und SVM (RBF-Kernel), in Sekunden auf denselben Bändern, ROIs und derselben Aufteilung angepasst und auf den Validierungspixeln abgestimmt; die Einstellungen der tiefen Modelle gelten für sie nicht.
Cluster je Klasse: die Unter-Cluster jeder Klasse bei CSSMamba.
Epochen: Durchläufe über die Szene; die Epoche mit der besten Validierungsgenauigkeit wird behalten.
Lernrate: die Schrittweite von Adam.
Gerät: „Automatisch“ nutzt die GPU, wenn PyTorch eine findet, sonst die CPU.
Zufallsstartwert: derselbe Startwert ergibt dieselbe Aufteilung und dasselbe Modell.
Stichprobenaufteilung ohne Validierungs-ROIs (erweitert): „Pixel je Klasse“ zieht die Trainings- und Validierungspixel je Klasse zufällig (30 / 10 wie in den Veröffentlichungen), „Anteil“ den Trainings- und Validierungsanteil; die übrigen gelabelten Pixel testen das Modell im Bericht. Zufällige Testpixel liegen neben Trainingspixeln, was die Genauigkeit schönt: „Getrennte ROIs (räumlich)“ zieht dieselben Anzahlen aus einem Teil der ROIs jeder Klasse und testet auf den übrigen (eine Klasse mit weniger als 3 getrennten ROIs wird in Blöcke geteilt); „Automatisch“ (Vorgabe) teilt räumlich, wenn jede Klasse 3 getrennte ROIs hat, sonst nach Pixeln je Klasse. Das Protokoll nennt die gewählte Aufteilung.
Versteckte Breite (erweitert): 0 = die 128 der Veröffentlichung auf einer GPU, in deren Speicher sie passt (sonst die größte Breite, die passt), 32 auf der CPU.
Token-Auswahl, Cluster-Verlust, Gate, Pooling zwischen den Stufen (erweitert): die Ablationen der Veröffentlichung. Mit Pooling trainiert es etwa doppelt so schnell, es kostete aber 5 bis 8 Punkte OA und ist daher standardmäßig aus.
Kopf-Nachbarschaft (erweitert): die Pixel, die der Klassifikationskopf um jedes Pixel betrachtet. 5 x 5 glättet die Karte: Auf den großen Feldern von Salinas-A gewann es 0,1 Punkte (10 Seeds), bei den kleinen Objekten der MUUFL-Szene kostete es etwa 1,5 Punkte; 1 x 1 verlor auf beiden 1 bis 5 Punkte.
Speicherbudget (erweitert): MB, die ein Trainingsschritt belegen darf; eine Szene, die mehr braucht, wird in überlappenden Fenstern trainiert. 0 = halber Arbeitsspeicher (CPU) oder 80 % des freien GPU-Speichers.
Trainingsfenstergröße (erweitert): Auf einer Szene, die größer als eine Klassifikationskachel (512 px) ist, trainiert das Modell auf den Kacheln dieser Größe, die ROI-Pixel enthalten, und die Klassifikation wiederholt sie; so richtet sich die Zeit nach den ROIs, nicht nach der Szene. 0 = 64 px, der gemessene Standard. Größere Fenster geben jedem ROI-Pixel mehr Kontext, kosten aber Trainingszeit im Verhältnis ihrer Pixel (128 px: etwa das Dreifache) und haben die Genauigkeit von CSSMamba auf der EnMAP-Szene nicht erhöht; kleinere trainieren schneller mit weniger Kontext.
Modelldatei: erst geschrieben, wenn das Training fertig ist; ein abgebrochener Lauf hinterlässt keine.
Trainingsbericht: HTML mit den Trainingskurven, der Konfusionsmatrix, der Genauigkeit je Klasse, den Parametern, dem Gerät und den Zeiten.
Klassifizierte Trainingsszene (optional): das klassifizierte Trainingsraster in den Klassenfarben.</translation>
    </message>
    <message>
        <source>Validation ROIs</source>
        <translation>Validierungs-ROIs</translation>
    </message>
    <message>
        <source>Model</source>
        <translation>Modell</translation>
    </message>
    <message>
        <source>Clusters per class (CSSMamba)</source>
        <translation>Cluster je Klasse (CSSMamba)</translation>
    </message>
    <message>
        <source>Epochs</source>
        <translation>Epochen</translation>
    </message>
    <message>
        <source>Learning rate</source>
        <translation>Lernrate</translation>
    </message>
    <message>
        <source>Sample split without validation ROIs</source>
        <translation>Stichprobenaufteilung ohne Validierungs-ROIs</translation>
    </message>
    <message>
        <source>Training pixels per class</source>
        <translation>Trainingspixel je Klasse</translation>
    </message>
    <message>
        <source>Validation pixels per class</source>
        <translation>Validierungspixel je Klasse</translation>
    </message>
    <message>
        <source>Training ratio</source>
        <translation>Trainingsanteil</translation>
    </message>
    <message>
        <source>Validation ratio</source>
        <translation>Validierungsanteil</translation>
    </message>
    <message>
        <source>Hidden width (0 = chosen for the device)</source>
        <translation>Versteckte Breite (0 = passend zum Gerät)</translation>
    </message>
    <message>
        <source>Token selection (CSSMamba)</source>
        <translation>Token-Auswahl (CSSMamba)</translation>
    </message>
    <message>
        <source>Cluster loss (CSSMamba)</source>
        <translation>Cluster-Verlust (CSSMamba)</translation>
    </message>
    <message>
        <source>La (compact, separated clusters)</source>
        <translation>La (kompakte, getrennte Cluster)</translation>
    </message>
    <message>
        <source>Lb (follow the k-means prior)</source>
        <translation>Lb (dem k-Means-Prior folgen)</translation>
    </message>
    <message>
        <source>None</source>
        <translation>Keiner</translation>
    </message>
    <message>
        <source>Gate (CSSMamba)</source>
        <translation>Gate (CSSMamba)</translation>
    </message>
    <message>
        <source>Sigmoid (learned)</source>
        <translation>Sigmoid (gelernt)</translation>
    </message>
    <message>
        <source>Prior only</source>
        <translation>Nur Prior</translation>
    </message>
    <message>
        <source>Attention only</source>
        <translation>Nur Attention</translation>
    </message>
    <message>
        <source>Pooling between stages (CSSMamba)</source>
        <translation>Pooling zwischen den Stufen (CSSMamba)</translation>
    </message>
    <message>
        <source>Head neighbourhood (CSSMamba)</source>
        <translation>Kopf-Nachbarschaft (CSSMamba)</translation>
    </message>
    <message>
        <source>3 x 3 px (the paper's)</source>
        <translation>3 x 3 px (wie in der Veröffentlichung)</translation>
    </message>
    <message>
        <source>5 x 5 px (smoother: large fields)</source>
        <translation>5 x 5 px (glatter: große Felder)</translation>
    </message>
    <message>
        <source>1 x 1 px (sharpest)</source>
        <translation>1 x 1 px (am schärfsten)</translation>
    </message>
    <message>
        <source>Memory budget in MB (0 = auto)</source>
        <translation>Speicherbudget in MB (0 = automatisch)</translation>
    </message>
    <message>
        <source>Training window size in px (0 = 64)</source>
        <translation>Trainingsfenstergröße in px (0 = 64)</translation>
    </message>
    <message>
        <source>Tile size for the classification (0 = default)</source>
        <translation>Kachelgröße für die Klassifikation (0 = Vorgabe)</translation>
    </message>
    <message>
        <source>Training report</source>
        <translation>Trainingsbericht</translation>
    </message>
    <message>
        <source>Classified training scene</source>
        <translation>Klassifizierte Trainingsszene</translation>
    </message>
    <message>
        <source>Train M3amba (multi-modal)</source>
        <translation>M3amba trainieren (multimodal)</translation>
    </message>
    <message>
        <source>Trains M3amba, a CLIP-driven multi-modal Mamba classifier, on a hyperspectral raster together with auxiliary rasters of the same area (LiDAR DSM or intensity, SAR), and writes a model file for 'Classify raster', an HTML training report and, optionally, the classified training scene.

Hyperspectral raster: its grid is the grid of the outputs; bad bands (bbl=0) and nodata are left out.
Auxiliary rasters: each is resampled onto the hyperspectral raster's grid (another resolution, extent or CRS is fine if they overlap); pixels that are nodata in any raster are left out. The order matters: 'Classify raster' needs the same kinds of rasters in the same order.
Training ROIs, Class id field, Class name field: as in 'Train CSSMamba'.
Validation ROIs (optional): choose the best epoch; without them 30 training and 10 validation pixels per class are drawn and the other labelled pixels test the model.
CLIP ViT-B/32 image-encoder weights: the plugin cannot download them: OpenAI's ViT-B-32.pt (https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt), or an open_clip or safetensors ViT-B/32 file, saved on this computer. The model file records its checksum.
Without the CLIP branch: trains the documented ablation instead; then leave the weights empty.
Epochs: passes over the crops holding training pixels; the epoch with the best validation accuracy is kept.
Learning rate: AdamW's step size.
Device: Auto uses the GPU when PyTorch sees one, else the CPU.
Random seed: the same seed gives the same split and the same model.
Hidden width, Blocks per stream (advanced): 0 = the paper's width 384 and 9 blocks on a GPU whose memory fits them (else the largest width that fits), width 16 and 2 blocks on the CPU.
Resampling of the auxiliary rasters (advanced): bilinear for continuous data such as a DSM, nearest neighbour for classes or codes, average for rasters much finer than the hyperspectral one.
Model file: written only when training completes; a cancelled run leaves none.
Training report: HTML with the training curves, confusion matrix, per-class accuracy, parameters, device and timings.
Classified training scene (optional): the training raster classified, in the class colours.</source>
        <translation>Trainiert M3amba, einen CLIP-gestützten multimodalen Mamba-Klassifikator, auf einem Hyperspektralraster zusammen mit Zusatzrastern desselben Gebiets (LiDAR-DSM oder -Intensität, SAR) und schreibt eine Modelldatei für „Raster klassifizieren“, einen HTML-Trainingsbericht und auf Wunsch die klassifizierte Trainingsszene.

Hyperspektralraster: sein Gitter ist das Gitter der Ausgaben; schlechte Bänder (bbl=0) und NoData bleiben außen vor.
Zusatzraster: jedes wird auf das Gitter des Hyperspektralrasters umgerechnet (andere Auflösung, Ausdehnung oder ein anderes KBS sind kein Problem, wenn sie sich überlappen); Pixel, die in einem der Raster NoData sind, bleiben außen vor. Die Reihenfolge zählt: „Raster klassifizieren“ braucht dieselben Arten von Rastern in derselben Reihenfolge.
Trainings-ROIs, Klassen-ID-Feld, Klassennamen-Feld: wie in „CSSMamba trainieren“.
Validierungs-ROIs (optional): bestimmen die beste Epoche; ohne sie werden je Klasse 30 Trainings- und 10 Validierungspixel gezogen, und die übrigen gelabelten Pixel testen das Modell.
Gewichte des CLIP-ViT-B/32-Bildencoders: das Plugin kann sie nicht herunterladen: OpenAIs ViT-B-32.pt (https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt) oder eine open_clip- bzw. safetensors-Datei von ViT-B/32, gespeichert auf diesem Rechner. Die Modelldatei hält ihre Prüfsumme fest.
Ohne den CLIP-Zweig: trainiert stattdessen die dokumentierte Ablation; die Gewichte dann leer lassen.
Epochen: Durchläufe über die Ausschnitte mit Trainingspixeln; die Epoche mit der besten Validierungsgenauigkeit wird behalten.
Lernrate: die Schrittweite von AdamW.
Gerät: „Automatisch“ nutzt die GPU, wenn PyTorch eine findet, sonst die CPU.
Zufallsstartwert: derselbe Startwert ergibt dieselbe Aufteilung und dasselbe Modell.
Versteckte Breite, Blöcke je Strom (erweitert): 0 = Breite 384 und 9 Blöcke wie in der Veröffentlichung auf einer GPU, in deren Speicher sie passen (sonst die größte Breite, die passt), Breite 16 und 2 Blöcke auf der CPU.
Resampling der Zusatzraster (erweitert): bilinear für kontinuierliche Daten wie ein DSM, nächster Nachbar für Klassen oder Codes, Mittelwert für Raster, die viel feiner als das Hyperspektralraster sind.
Modelldatei: erst geschrieben, wenn das Training fertig ist; ein abgebrochener Lauf hinterlässt keine.
Trainingsbericht: HTML mit den Trainingskurven, der Konfusionsmatrix, der Genauigkeit je Klasse, den Parametern, dem Gerät und den Zeiten.
Klassifizierte Trainingsszene (optional): das klassifizierte Trainingsraster in den Klassenfarben.</translation>
    </message>
    <message>
        <source>Hyperspectral raster</source>
        <translation>Hyperspektralraster</translation>
    </message>
    <message>
        <source>Auxiliary rasters (LiDAR DSM/intensity, SAR), in this order</source>
        <translation>Zusatzraster (LiDAR-DSM/-Intensität, SAR) in dieser Reihenfolge</translation>
    </message>
    <message>
        <source>CLIP ViT-B/32 image-encoder weights</source>
        <translation>Gewichte des CLIP-ViT-B/32-Bildencoders</translation>
    </message>
    <message>
        <source>CLIP ViT weights (*.pt *.pth *.bin *.safetensors);;All files (*.*)</source>
        <translation>CLIP-ViT-Gewichte (*.pt *.pth *.bin *.safetensors);;Alle Dateien (*.*)</translation>
    </message>
    <message>
        <source>Without the CLIP branch (ablation, no weights needed)</source>
        <translation>Ohne den CLIP-Zweig (Ablation, keine Gewichte nötig)</translation>
    </message>
    <message>
        <source>Blocks per stream (0 = chosen for the device)</source>
        <translation>Blöcke je Strom (0 = passend zum Gerät)</translation>
    </message>
    <message>
        <source>Resampling of the auxiliary rasters</source>
        <translation>Resampling der Zusatzraster</translation>
    </message>
    <message>
        <source>Bilinear</source>
        <translation>Bilinear</translation>
    </message>
    <message>
        <source>Cubic</source>
        <translation>Kubisch</translation>
    </message>
    <message>
        <source>Nearest neighbour</source>
        <translation>Nächster Nachbar</translation>
    </message>
    <message>
        <source>Average</source>
        <translation>Mittelwert</translation>
    </message>
    <message>
        <source>CSSMamba in the Processing Toolbox</source>
        <translation>CSSMamba in den Verarbeitungswerkzeugen</translation>
    </message>
    <message>
        <source>Show the CSSMamba tools in the Processing Toolbox</source>
        <translation>Die CSSMamba-Werkzeuge in den Verarbeitungswerkzeugen zeigen</translation>
    </message>
    <message>
        <source>Classify raster with CSSMamba…</source>
        <translation>Raster mit CSSMamba klassifizieren …</translation>
    </message>
    <message>
        <source>The Processing plugin is disabled: enable it in Plugins ▸ Manage and Install Plugins.</source>
        <translation>Die Erweiterung „Processing“ ist deaktiviert: Aktivieren Sie sie unter Erweiterungen ▸ Erweiterungen verwalten und installieren.</translation>
    </message>
    <message>
        <source>{} has unsaved edits; they are used.</source>
        <translation>{} hat ungespeicherte Änderungen; sie werden verwendet.</translation>
    </message>
    <message>
        <source>Choose the CLASS_FIELD of the reference ROIs: the field holding the class ids.</source>
        <translation>Wählen Sie das CLASS_FIELD der Referenz-ROIs: das Feld mit den Klassen-IDs.</translation>
    </message>
    <message>
        <source>OA {:.2f} %, AA {:.2f} %, kappa {:.4f} on {:,} reference pixels</source>
        <translation>OA {:.2f} %, AA {:.2f} %, Kappa {:.4f} auf {:,} Referenzpixeln</translation>
    </message>
    <message>
        <source>Area-adjusted OA (Olofsson et al. 2014) {:.2f} % ± {} (95 %); class areas in the report</source>
        <translation>Flächenbereinigte OA (Olofsson et al. 2014) {:.2f} % ± {} (95 %); Klassenflächen im Bericht</translation>
    </message>
    <message>
        <source>Give the reference either as ROIs (REFERENCE_VECTOR with CLASS_FIELD) or as a label raster (REFERENCE_RASTER), {}.</source>
        <translation>Geben Sie die Referenz entweder als ROIs (REFERENCE_VECTOR mit CLASS_FIELD) oder als Label-Raster (REFERENCE_RASTER) an, {}.</translation>
    </message>
    <message>
        <source>not both</source>
        <translation>nicht beides</translation>
    </message>
    <message>
        <source>one of them is needed</source>
        <translation>eines davon ist nötig</translation>
    </message>
    <message>
        <source>The class field '{}' of the reference ROIs is of type {}, not a number; choose the field holding the class ids (whole numbers from 1).</source>
        <translation>Das Klassenfeld „{}“ der Referenz-ROIs hat den Typ {}, keine Zahl; wählen Sie das Feld mit den Klassen-IDs (ganze Zahlen ab 1).</translation>
    </message>
    <message>
        <source>The reference ROIs have no field '{}' ({}); their fields: {}</source>
        <translation>Die Referenz-ROIs haben kein Feld „{}“ ({}); ihre Felder: {}</translation>
    </message>
    <message>
        <source>The selective scan does not match the reference: please report this.</source>
        <translation>Der Selective Scan stimmt nicht mit der Referenz überein: Bitte melden Sie das.</translation>
    </message>
    <message>
        <source>classes</source>
        <translation>Klassen</translation>
    </message>
    <message>
        <source>confidence</source>
        <translation>Konfidenz</translation>
    </message>
    <message>
        <source>clusters</source>
        <translation>Cluster</translation>
    </message>
    <message>
        <source>probabilities</source>
        <translation>Wahrscheinlichkeiten</translation>
    </message>
    <message>
        <source>classes, minimum mapping unit</source>
        <translation>Klassen, Mindestkartiereinheit</translation>
    </message>
    <message>
        <source>classes, majority filtered</source>
        <translation>Klassen, Mehrheitsfilter</translation>
    </message>
    <message>
        <source>{}: the raster layer cannot be opened; choose a raster file</source>
        <translation>{}: Der Rasterlayer lässt sich nicht öffnen; wählen Sie eine Rasterdatei</translation>
    </message>
    <message>
        <source>{}: the layer '{}' comes from the '{}' provider, not from a file; save it as a GeoTIFF first (Raster ▸ Conversion ▸ Translate) and use that file</source>
        <translation>{}: Der Layer „{}“ stammt vom Datenanbieter „{}“, nicht aus einer Datei; speichern Sie ihn zuerst als GeoTIFF (Raster ▸ Konvertierung ▸ Übersetzen) und verwenden Sie diese Datei</translation>
    </message>
    <message>
        <source>{}: the outputs are written as GeoTIFF; give a file name ending in .tif (got {})</source>
        <translation>{}: Die Ausgaben werden als GeoTIFF geschrieben; geben Sie einen Dateinamen mit der Endung .tif an (erhalten: {})</translation>
    </message>
    <message>
        <source>Model {}: {} classes ({})</source>
        <translation>Modell {}: {} Klassen ({})</translation>
    </message>
    <message>
        <source>Classification cancelled; no output was written.</source>
        <translation>Klassifikation abgebrochen; es wurde keine Ausgabe geschrieben.</translation>
    </message>
    <message>
        <source>The {} model is multi-modal: besides the hyperspectral raster (INPUT) it needs {} auxiliary raster(s) in AUX_RASTERS, in the training order: {}. Add them to AUX_RASTERS.</source>
        <translation>Das Modell {} ist multimodal: Neben dem Hyperspektralraster (INPUT) braucht es {} Zusatzraster in AUX_RASTERS, in der Reihenfolge des Trainings: {}. Fügen Sie sie AUX_RASTERS hinzu.</translation>
    </message>
    <message>
        <source>AUX_RASTERS holds {} raster(s), but the {} model was trained with {} auxiliary raster(s), in this order: {}. Give the same kinds of rasters in the same order.</source>
        <translation>AUX_RASTERS enthält {} Raster, aber das Modell {} wurde mit {} Zusatzraster(n) trainiert, in dieser Reihenfolge: {}. Geben Sie dieselben Arten von Rastern in derselben Reihenfolge an.</translation>
    </message>
    <message>
        <source>{}: not used by multi-modal models, which predict on overlapping crops of their own.</source>
        <translation>{}: wird von multimodalen Modellen nicht verwendet, da sie auf eigenen, überlappenden Ausschnitten vorhersagen.</translation>
    </message>
    <message>
        <source>The {} model has no clustering, so there is no cluster map; OUTPUT_CLUSTERS is not written.</source>
        <translation>Das Modell {} hat keine Clusterbildung und damit keine Clusterkarte; OUTPUT_CLUSTERS wird nicht geschrieben.</translation>
    </message>
    <message>
        <source>Patches under {} px ({}-connected) merged into their largest neighbour.</source>
        <translation>Flächen unter {} px ({}-zusammenhängend) ihrer größten Nachbarfläche zugeschlagen.</translation>
    </message>
    <message>
        <source>Majority of every {0} x {0} px window.</source>
        <translation>Mehrheit jedes Fensters von {0} x {0} px.</translation>
    </message>
    <message>
        <source>The {} model reads the hyperspectral raster only, so the {} raster(s) in AUX_RASTERS are ignored; to use them, train a model with 'Train M3amba (multi-modal)'.</source>
        <translation>Das Modell {} liest nur das Hyperspektralraster, daher werden die {} Raster in AUX_RASTERS ignoriert; um sie zu nutzen, trainieren Sie ein Modell mit „M3amba trainieren (multimodal)“.</translation>
    </message>
    <message>
        <source>Comparison cancelled: the models finished before stay in the output folder; no report was written.</source>
        <translation>Vergleich abgebrochen: die zuvor fertigen Modelle bleiben im Ausgabeordner; es wurde kein Bericht geschrieben.</translation>
    </message>
    <message>
        <source>{}: OA {:.2f} %, AA {:.2f} %, kappa {:.4f}; trained in {:.1f} s, classified in {:.1f} s</source>
        <translation>{}: OA {:.2f} %, AA {:.2f} %, Kappa {:.4f}; trainiert in {:.1f} s, klassifiziert in {:.1f} s</translation>
    </message>
    <message>
        <source>ROI layer written to {} ({})</source>
        <translation>ROI-Layer geschrieben nach {} ({})</translation>
    </message>
    <message>
        <source>no CRS</source>
        <translation>kein KBS</translation>
    </message>
    <message>
        <source>The ROI layer is written as a GeoPackage, which keeps its style inside the file, but {} is not a .gpkg file name; give a file name ending in .gpkg</source>
        <translation>Der ROI-Layer wird als GeoPackage geschrieben, das seinen Stil in der Datei behält, aber {} ist kein .gpkg-Dateiname; geben Sie einen Dateinamen mit der Endung .gpkg an</translation>
    </message>
    <message>
        <source>The raster {} has no CRS; draw the ROIs on its pixel grid (x = column, y = -row), as the training reads them that way</source>
        <translation>Das Raster {} hat kein KBS; zeichnen Sie die ROIs auf seinem Pixelgitter (x = Spalte, y = -Zeile), denn so liest das Training sie</translation>
    </message>
    <message>
        <source>Cannot save the style into {}: {}</source>
        <translation>Der Stil lässt sich nicht in {} speichern: {}</translation>
    </message>
    <message>
        <source>class {}: {}</source>
        <translation>Klasse {}: {}</translation>
    </message>
    <message>
        <source>Cannot write the ROI layer {}: {}; choose a writable folder and a file that is not open elsewhere</source>
        <translation>Der ROI-Layer {} lässt sich nicht schreiben: {}; wählen Sie einen beschreibbaren Ordner und eine Datei, die nicht anderswo geöffnet ist</translation>
    </message>
    <message>
        <source>The ROI layer {} was written but cannot be opened again</source>
        <translation>Der ROI-Layer {} wurde geschrieben, lässt sich aber nicht wieder öffnen</translation>
    </message>
    <message>
        <source>The sample ROIs' style could not be saved in {}: {}</source>
        <translation>Der Stil der Beispiel-ROIs konnte nicht in {} gespeichert werden: {}</translation>
    </message>
    <message>
        <source>class {} {}: {:,} px in {:,} ROIs</source>
        <translation>Klasse {} {}: {:,} px in {:,} ROIs</translation>
    </message>
    <message>
        <source>{} suggested training areas</source>
        <translation>{} vorgeschlagene Trainingsgebiete</translation>
    </message>
    <message>
        <source>Cancelled; no suggestion layer was written.</source>
        <translation>Abgebrochen; es wurde kein Vorschlags-Layer geschrieben.</translation>
    </message>
    <message>
        <source>The training ROI layer</source>
        <translation>Der Trainings-ROI-Layer</translation>
    </message>
    <message>
        <source>The validation ROI layer</source>
        <translation>Der Validierungs-ROI-Layer</translation>
    </message>
    <message>
        <source>(none)</source>
        <translation>(keine)</translation>
    </message>
    <message>
        <source>class ids</source>
        <translation>Klassen-IDs</translation>
    </message>
    <message>
        <source>class names</source>
        <translation>Klassennamen</translation>
    </message>
    <message>
        <source> (Auto: PyTorch sees no CUDA GPU)</source>
        <translation> (Automatisch: PyTorch findet keine CUDA-GPU)</translation>
    </message>
    <message>
        <source>Trained on {} with the '{}' selective-scan backend in {:.1f} s; kept epoch {} (validation OA {:.4f}); {} OA {:.4f}, kappa {:.4f}</source>
        <translation>Trainiert auf {} mit dem Selective-Scan-Backend „{}“ in {:.1f} s; behalten: Epoche {} (Validierungs-OA {:.4f}); {} OA {:.4f}, Kappa {:.4f}</translation>
    </message>
    <message>
        <source>The model file gets the extension .pt, which 'Classify raster' expects: {}</source>
        <translation>Die Modelldatei erhält die Endung .pt, die „Raster klassifizieren“ erwartet: {}</translation>
    </message>
    <message>
        <source>Class colours{} taken from the categorised style of the ROI layer.</source>
        <translation>Klassenfarben{} aus dem kategorisierten Stil des ROI-Layers übernommen.</translation>
    </message>
    <message>
        <source> and names</source>
        <translation> und -namen</translation>
    </message>
    <message>
        <source>{} ({}): the class field '{}' holds {} values, not numbers; class ids must be integers &gt;= 1. Choose a numeric field, or add one with the Field Calculator, e.g. to_int("{}").</source>
        <translation>{} ({}): Das Klassenfeld „{}“ enthält {}-Werte, keine Zahlen; Klassen-IDs müssen ganze Zahlen &gt;= 1 sein. Wählen Sie ein numerisches Feld oder legen Sie eines mit dem Feldrechner an, z. B. to_int("{}").</translation>
    </message>
    <message>
        <source>{} ({}) has no features (or none is selected while 'Selected features only' is on); digitise ROIs first, e.g. in a layer made by 'Create training ROI layer'.</source>
        <translation>{} ({}) hat keine Objekte (oder keines ist gewählt, während „Nur gewählte Objekte“ aktiv ist); digitalisieren Sie zuerst ROIs, z. B. in einem Layer aus „Trainings-ROI-Layer erstellen“.</translation>
    </message>
    <message>
        <source>{} ({}): every feature has NULL in the class field '{}'; fill in the class ids.</source>
        <translation>{} ({}): Jedes Objekt hat NULL im Klassenfeld „{}“; tragen Sie die Klassen-IDs ein.</translation>
    </message>
    <message>
        <source>{} ({}) has only one class (id {} in '{}'); a classifier needs at least two: digitise ROIs of the other classes too.</source>
        <translation>{} ({}) hat nur eine Klasse (ID {} in „{}“); ein Klassifikator braucht mindestens zwei: Digitalisieren Sie auch ROIs der anderen Klassen.</translation>
    </message>
    <message>
        <source>Training device: {}</source>
        <translation>Trainingsgerät: {}</translation>
    </message>
    <message>
        <source>Training cancelled; no model file was written.</source>
        <translation>Training abgebrochen; es wurde keine Modelldatei geschrieben.</translation>
    </message>
    <message>
        <source>Classification of the training scene cancelled; the model and the report were kept: classify later with 'Classify raster'.</source>
        <translation>Klassifikation der Trainingsszene abgebrochen; Modell und Bericht bleiben erhalten: Klassifizieren Sie später mit „Raster klassifizieren“.</translation>
    </message>
    <message>
        <source>The validation ROIs choose the epoch: every training ROI pixel trains and SPLIT is not used.</source>
        <translation>Die Validierungs-ROIs bestimmen die Epoche: Jedes Pixel der Trainings-ROIs trainiert, und SPLIT wird nicht verwendet.</translation>
    </message>
    <message>
        <source>Model {}: {}</source>
        <translation>Modell {}: {}</translation>
    </message>
    <message>
        <source>size chosen for the device</source>
        <translation>Größe passend zum Gerät gewählt</translation>
    </message>
    <message>
        <source>{} ({}) has no field '{}'; its fields: {}. Choose the field that holds the {} in {}.</source>
        <translation>{} ({}) hat kein Feld „{}“; seine Felder: {}. Wählen Sie das Feld, das die {} in {} enthält.</translation>
    </message>
    <message>
        <source>{} is fitted once on the training pixels: the deep-model settings {} do not apply and are ignored.</source>
        <translation>{} wird einmal auf den Trainingspixeln angepasst: die Einstellungen der tiefen Modelle {} gelten nicht und werden ignoriert.</translation>
    </message>
    <message>
        <source>{} has no clustering: {} apply to CSSMamba only and are ignored.</source>
        <translation>{} hat keine Clusterbildung: {} gelten nur für CSSMamba und werden ignoriert.</translation>
    </message>
    <message>
        <source>Model {}: {}; auxiliary rasters in this order: {}</source>
        <translation>Modell {}: {}; Zusatzraster in dieser Reihenfolge: {}</translation>
    </message>
    <message>
        <source>The validation ROIs choose the epoch: every training ROI pixel trains.</source>
        <translation>Die Validierungs-ROIs bestimmen die Epoche: Jedes Pixel der Trainings-ROIs trainiert.</translation>
    </message>
</context>
</TS>
